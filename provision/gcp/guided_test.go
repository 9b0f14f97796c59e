package gcp

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// terminal drives a program through a pseudo-terminal, like a user would.
type terminal struct {
	t    *testing.T
	ptmx io.ReadWriteCloser
	mu   sync.Mutex
	buf  strings.Builder
	seen int
}

func newTerminal(t *testing.T) (*terminal, io.ReadWriteCloser) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal available: %v", err)
	}
	term := &terminal{t: t, ptmx: ptmx}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			term.mu.Lock()
			term.buf.Write(b[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = tty.Close(); _ = ptmx.Close() })
	return term, tty
}

// expect waits until s appears after what earlier expects consumed.
func (term *terminal) expect(s string) {
	term.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		term.mu.Lock()
		out := term.buf.String()
		term.mu.Unlock()
		if i := strings.Index(out[term.seen:], s); i >= 0 {
			term.seen += i + len(s)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	term.mu.Lock()
	defer term.mu.Unlock()
	term.t.Fatalf("terminal never showed %q; screen:\n%s", s, term.buf.String())
}

func (term *terminal) send(s string) {
	if _, err := term.ptmx.Write([]byte(s + "\n")); err != nil {
		term.t.Fatal(err)
	}
}

func TestGuidedModeOnTerminal(t *testing.T) {
	w := newWorld(t)
	term, tty := newTerminal(t)
	done := make(chan error, 1)
	go func() {
		done <- w.p.Reconcile(context.Background(), provision.Options{Interactive: true, In: tty, Out: tty})
	}()
	term.expect("Project [proj-1]: ")
	term.send("")
	term.expect("Region [us-central1]: ")
	term.send("")
	term.expect("3) network tags")
	term.expect("Choice: ")
	term.send("1")
	term.expect("2) us-central1-a/web-1  10.0.0.3  web")
	term.expect("4) us-central1-b/web-2  10.0.0.4  web")
	term.expect("Pick (e.g. 1,3): ")
	term.send("9")
	term.expect("please answer with numbers from 1 to 4")
	term.send("2,4")
	term.expect("  + would create packet mirroring metlo-appliance-metlo-1-pm (2 instances, 0 subnets, 0 tags)")
	term.expect("Apply these changes? [y/N]: ")
	if m := w.emu.Mutations(); len(m) != 0 {
		t.Fatalf("changed before confirmation: %v", m)
	}
	term.send("y")
	term.expect("gcp: policy metlo-appliance-metlo-1-pm ok: 2 instances, 0 subnets, 0 tags (6 created, 1 changed)")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestGuidedModeDeclined(t *testing.T) {
	w := newWorld(t)
	term, tty := newTerminal(t)
	done := make(chan error, 1)
	go func() {
		done <- w.p.Reconcile(context.Background(), provision.Options{Interactive: true, In: tty, Out: tty})
	}()
	term.expect("Project [proj-1]: ")
	term.send("")
	term.expect("Region [us-central1]: ")
	term.send("")
	term.expect("Choice: ")
	term.send("2")
	term.expect("1) app-sub  10.1.0.0/24")
	term.expect("2) default-sub  10.0.0.0/20")
	term.expect("Pick (e.g. 1,3): ")
	term.send("1")
	term.expect("Apply these changes? [y/N]: ")
	term.send("")
	term.expect("gcp: nothing changed")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := w.emu.Mutations(); len(m) != 0 {
		t.Errorf("declined plan still mutated: %v", m)
	}
}
