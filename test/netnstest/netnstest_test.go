//go:build linux

package netnstest

import (
	"flag"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestShortSkipsEvenAsRoot keeps `make test-short` free of kernel tests whoever runs it.
func TestShortSkipsEvenAsRoot(t *testing.T) {
	f := flag.Lookup("test.short")
	old := f.Value.String()
	if err := flag.Set("test.short", "true"); err != nil {
		t.Fatal(err)
	}
	defer flag.Set("test.short", old)
	for name, require := range map[string]func(testing.TB){
		"Require":     func(t testing.TB) { Require(t) },
		"RequireRoot": func(t testing.TB) { RequireRoot(t, "test") },
		"NewLab":      func(t testing.TB) { NewLab(t, "a") },
	} {
		var skipped bool
		t.Run(name, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			require(t)
		})
		if !skipped {
			t.Errorf("%s did not skip in -short mode", name)
		}
	}
}

// TestDoSwitchesAndReturns checks that fn runs inside the namespace and that the thread it
// ran on is back in the caller's namespace afterwards.
func TestDoSwitchesAndReturns(t *testing.T) {
	Require(t)
	ns := Add(t, "ntdo")
	// do runs on this goroutine: pin it so the check afterwards reads the very thread it
	// switched (LockOSThread nests; do's unlock leaves ours in place).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	if err := do(ns, func() (err error) { inside, err = os.Readlink("/proc/thread-self/ns/net"); return err }); err != nil {
		t.Fatal(err)
	}
	if inside == own {
		t.Fatalf("do ran in the caller's namespace %s", own)
	}
	if after, err := os.Readlink("/proc/thread-self/ns/net"); err != nil || after != own {
		t.Fatalf("after do the thread is in %s, want %s (%v)", after, own, err)
	}
	var viaDo string
	if err := Do(ns, func() (err error) { viaDo, err = os.Readlink("/proc/thread-self/ns/net"); return err }); err != nil || viaDo != inside {
		t.Fatalf("Do ran in %s, want %s (%v)", viaDo, inside, err)
	}
}

// TestLabNamesAndVeth builds a two-namespace lab with a veth between them and connects
// across it with sockets opened through Lab.Do.
func TestLabNamesAndVeth(t *testing.T) {
	l := NewLab(t, "a", "b")
	if len(l.Prefix()) != 8 || l.NS("a") != l.Prefix()+"-a" {
		t.Fatalf("prefix %q, ns %q", l.Prefix(), l.NS("a"))
	}
	l.Veth("a", l.Prefix()+"x", "b", l.Prefix()+"y", 1600)
	l.In("a", "ip addr add 10.77.0.1/24 dev "+l.Prefix()+"x")
	l.In("b", "ip addr add 10.77.0.2/24 dev "+l.Prefix()+"y")
	var ln net.Listener
	if err := l.Do("b", func() (err error) { ln, err = net.Listen("tcp", "10.77.0.2:7000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	var got []byte
	if err := l.Do("a", func() error {
		c, err := net.DialTimeout("tcp", "10.77.0.2:7000", 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		got, err = io.ReadAll(c)
		return err
	}); err != nil || string(got) != "hi" {
		t.Fatalf("connect across the veth: %q, %v", got, err)
	}
	if out := l.In("b", "ip link show "+l.Prefix()+"y"); !strings.Contains(out, "mtu 1600") {
		t.Errorf("veth mtu not set: %s", out)
	}
}
