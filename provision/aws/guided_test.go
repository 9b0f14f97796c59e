package aws

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/metlo-labs/metlo-appliance/provision/aws/awsemu"
)

// terminal drives guided mode through a real pseudo-terminal like a person would.
type terminal struct {
	t    *testing.T
	ptmx io.ReadWriter
	seen chan string
	buf  strings.Builder
}

func (tm *terminal) expect(s string) {
	tm.t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(tm.buf.String(), s) {
		select {
		case chunk, ok := <-tm.seen:
			if !ok {
				tm.t.Fatalf("terminal closed waiting for %q; screen:\n%s", s, tm.buf.String())
			}
			tm.buf.WriteString(chunk)
		case <-deadline:
			tm.t.Fatalf("timed out waiting for %q; screen:\n%s", s, tm.buf.String())
		}
	}
	// Consume up to the match so the next expect looks at new output only.
	rest := tm.buf.String()[strings.Index(tm.buf.String(), s)+len(s):]
	tm.buf.Reset()
	tm.buf.WriteString(rest)
}

func (tm *terminal) send(line string) {
	if _, err := io.WriteString(tm.ptmx, line+"\r"); err != nil {
		tm.t.Fatal(err)
	}
}

// startGuided runs Reconcile without sources on a pseudo-terminal.
func startGuided(t *testing.T, f *fixture, dry bool) (*terminal, chan error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal available: %v", err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	tm := &terminal{t: t, ptmx: ptmx, seen: make(chan string, 64)}
	go func() {
		r := bufio.NewReader(ptmx)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				tm.seen <- string(buf[:n])
			}
			if err != nil {
				close(tm.seen)
				return
			}
		}
	}()
	opts := f.opts
	opts.In, opts.Out, opts.Interactive, opts.DryRun = tty, tty, true, dry
	done := make(chan error, 1)
	go func() { done <- f.p.Reconcile(context.Background(), opts) }()
	return tm, done
}

func guidedFixture(t *testing.T) (*fixture, string) {
	f := newFixture(t)
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000001", Tags: map[string]string{"Name": "web-1"}})
	web2 := f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000002", Tags: map[string]string{"Name": "web-2"}})
	f.emu.AddInstance(awsemu.Instance{ID: "i-0web000000000003", Tags: map[string]string{"Name": "web-3"}})
	return f, web2
}

// Defect 8: guided mode honours --dry-run: the plan is shown, nothing is asked or changed.
func TestGuidedModeDryRun(t *testing.T) {
	f, web2 := guidedFixture(t)
	tm, done := startGuided(t, f, true)
	tm.expect("AWS region [us-east-1]: ")
	tm.send("")
	tm.expect("Choice [1]: ")
	tm.send("1")
	tm.expect("Mirror which")
	tm.send("2")
	tm.expect("would create traffic mirror session " + web2)
	tm.expect("aws: dry run, nothing changed")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("guided dry run did not finish")
	}
	if n := f.emu.Mutations(); n != 0 || strings.Contains(tm.buf.String(), "Apply these changes?") {
		t.Fatalf("guided dry run made %d changes or asked to apply:\n%s", n, tm.buf.String())
	}
}

func TestGuidedModeOnATerminal(t *testing.T) {
	f, web2 := guidedFixture(t)
	tm, done := startGuided(t, f, false)

	tm.expect("AWS region [us-east-1]: ")
	tm.send("")
	tm.expect("What should be mirrored?")
	tm.expect("Choice [1]: ")
	tm.send("1")
	tm.expect("web-2")
	tm.expect("Mirror which")
	tm.send("9") // out of range: asked again
	tm.expect("Please answer numbers between 1 and 3")
	tm.send("2")
	tm.expect("would create traffic mirror session " + web2)
	tm.expect("Apply these changes? [y/N]: ")
	if n := f.emu.Mutations(); n != 0 {
		t.Fatalf("%d mutations before confirmation", n)
	}
	tm.send("y")
	tm.expect("aws: 1 sessions mirroring (1 created")
	tm.expect("--source instance:i-0web000000000002")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("guided mode did not finish")
	}
	if got := f.ourSessions(); len(got) != 1 || got[web2].ID == "" {
		t.Fatalf("sessions %v, want one on %s", keys(got), web2)
	}
}
