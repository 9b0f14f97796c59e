//go:build linux

// Package netnstest holds the network-namespace helpers that kernel tests share: create a
// namespace that is removed with the test, run ip(8), and run code on a thread inside a
// namespace so the sockets it opens live there.
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

// Require skips the test unless it may create network namespaces.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
}

// UniqueName returns prefix plus random hex, short enough for an interface name.
func UniqueName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Add creates a network namespace removed at the end of the test.
func Add(t testing.TB, prefix string) string {
	t.Helper()
	name := UniqueName(prefix)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespace (not permitted here?): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// IP runs an ip(8) command and fails the test on error.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Run runs fn on an OS thread switched into namespace ns; sockets fn creates stay there.
// It runs on its own goroutine, so a thread that cannot switch back is simply discarded.
func Run(t testing.TB, ns string, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- Do(ns, func() error { fn(); return nil }) }()
	if err := <-done; err != nil {
		t.Fatalf("netns %s: %v", ns, err)
	}
}

// Do runs fn on a thread switched into the named namespace and returns fn's error. Sockets
// fn opens belong to that namespace; goroutines fn starts do not.
func Do(name string, fn func() error) error {
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
