package xdp

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// lab is a set of network namespaces a test creates and removes.
type lab struct {
	t      testing.TB
	prefix string
	names  []string
}

// newLab creates namespaces "<prefix>-<name>" with a random prefix so parallel runs don't
// collide, and deletes them when the test ends.
func newLab(t testing.TB, names ...string) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2: ", err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &lab{t: t, prefix: "mx" + hex.EncodeToString(b)}
	for _, n := range names {
		ns := l.ns(n)
		l.sh("ip netns add " + ns)
		l.names = append(l.names, ns)
		l.sh("ip -n " + ns + " link set lo up")
	}
	t.Cleanup(func() {
		for _, ns := range l.names {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	return l
}

// ns is the full namespace name of name.
func (l *lab) ns(name string) string { return l.prefix + "-" + name }

// sh runs a command line (split on spaces) and fails the test on error.
func (l *lab) sh(cmdline string) string {
	l.t.Helper()
	f := strings.Fields(cmdline)
	out, err := exec.Command(f[0], f[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", cmdline, err, out)
	}
	return string(out)
}

// in runs sh inside namespace name.
func (l *lab) in(name, cmdline string) string {
	l.t.Helper()
	return l.sh("ip netns exec " + l.ns(name) + " " + cmdline)
}

// do runs fn on an OS thread switched into namespace name: sockets and XDP links created
// there belong to that namespace and keep working from any goroutine afterwards.
func (l *lab) do(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked when restoring fails: the thread then dies
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + l.ns(name))
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
