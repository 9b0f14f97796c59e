//go:build linux

// Package netnstest is the one network-namespace helper every kernel test uses: skip rules
// (root, tools, -short), namespaces removed with the test, veth pairs with offloads off,
// commands run inside a namespace, and code run on a thread inside a namespace so the
// sockets (and XDP links) it opens live there.
//
// `go test -short` promises no root and no lab: Require and RequireRoot skip in -short mode
// even when the test runs as root.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips the test in -short mode or when not root; what says what needs root
// (loading BPF programs, installing files owned by another user, …).
func RequireRoot(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skips kernel tests (%s)", what)
	}
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s", what)
	}
}

// Require skips the test unless it may create network namespaces: root, iproute2 and not
// -short. Any extra tools (tc, ethtool, tcpreplay, …) must be on PATH too.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	RequireRoot(t, "creates network namespaces")
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// UniqueName returns prefix plus random hex, short enough for an interface name when
// prefix has at most 7 characters.
func UniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Add creates a network namespace with its loopback up, removed at the end of the test;
// it skips the test when namespaces are not permitted here.
func Add(t testing.TB, prefix string) string {
	t.Helper()
	name := UniqueName(prefix)
	add(t, name)
	return name
}

func add(t testing.TB, name string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespace (not permitted here?): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	IP(t, "-n", name, "link", "set", "lo", "up")
}

// Cmd runs a command and fails the test on error; it returns the combined output.
func Cmd(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// IP runs an ip(8) command and fails the test on error.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	return Cmd(t, "ip", args...)
}

// Exec runs a command inside namespace ns (ip netns exec) and fails the test on error; it
// returns the combined output.
func Exec(t testing.TB, ns, name string, args ...string) string {
	t.Helper()
	return Cmd(t, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// NoOffloads turns TSO, GSO and GRO off on dev in ns, so the kernel hands around wire-sized
// frames, not 64 KB super-frames no cloud mirror sends. Without ethtool it does nothing.
func NoOffloads(t testing.TB, ns, dev string) {
	t.Helper()
	if _, err := exec.LookPath("ethtool"); err != nil {
		return
	}
	Exec(t, ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off")
}

// Veth joins namespace nsA (device ifA) and nsB (device ifB) with a veth pair, turns
// offloads off on both ends and brings them up. mtu 0 keeps the default.
func Veth(t testing.TB, nsA, ifA, nsB, ifB string, mtu int) {
	t.Helper()
	IP(t, "link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	for _, end := range [][2]string{{nsA, ifA}, {nsB, ifB}} {
		if mtu > 0 {
			IP(t, "-n", end[0], "link", "set", end[1], "mtu", fmt.Sprint(mtu))
		}
		NoOffloads(t, end[0], end[1])
		IP(t, "-n", end[0], "link", "set", end[1], "up")
	}
}

// Run runs fn on an OS thread switched into namespace ns; sockets fn creates stay there.
// It runs on its own goroutine, so a thread that cannot switch back is simply discarded.
func Run(t testing.TB, ns string, fn func()) {
	t.Helper()
	if err := Do(ns, func() error { fn(); return nil }); err != nil {
		t.Fatalf("netns %s: %v", ns, err)
	}
}

// Do runs fn on a fresh goroutine whose thread is switched into the named namespace and
// returns fn's error. Sockets and XDP links fn opens belong to that namespace for good and
// work from any goroutine afterwards; goroutines fn starts run outside it.
func Do(name string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- do(name, fn) }()
	return <-done
}

func do(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", name, err)
	}
	fnErr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards it when this goroutine exits,
		// so no other goroutine ever runs in the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("return from netns %s: %w", name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Lab is a set of named namespaces "<prefix>-<name>" a test creates together; the random
// prefix keeps parallel runs apart and also names the lab's interfaces.
type Lab struct {
	t      testing.TB
	prefix string
}

// NewLab checks Require, then creates one namespace per name, each removed with the test.
func NewLab(t testing.TB, names ...string) *Lab {
	t.Helper()
	Require(t)
	l := &Lab{t: t, prefix: UniqueName("nt")[:8]}
	for _, n := range names {
		add(t, l.NS(n))
	}
	return l
}

// Prefix is the lab's random prefix (6 characters), for interface names unique to the lab.
func (l *Lab) Prefix() string { return l.prefix }

// NS is the full namespace name of name.
func (l *Lab) NS(name string) string { return l.prefix + "-" + name }

// Sh runs a command line (split on spaces, no quoting) and fails the test on error.
func (l *Lab) Sh(cmdline string) string {
	l.t.Helper()
	f := strings.Fields(cmdline)
	return Cmd(l.t, f[0], f[1:]...)
}

// In runs a command line (split on spaces) inside namespace name.
func (l *Lab) In(name, cmdline string) string {
	l.t.Helper()
	f := strings.Fields(cmdline)
	return Exec(l.t, l.NS(name), f[0], f[1:]...)
}

// Veth joins namespaces a (device ifA) and b (device ifB) as the package-level Veth does.
func (l *Lab) Veth(a, ifA, b, ifB string, mtu int) {
	l.t.Helper()
	Veth(l.t, l.NS(a), ifA, l.NS(b), ifB, mtu)
}

// Do runs fn on a thread inside namespace name (see the package-level Do).
func (l *Lab) Do(name string, fn func() error) error { return Do(l.NS(name), fn) }
