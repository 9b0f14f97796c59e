package gcp

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
)

// step is one line of a plan: what happens to one resource, and the call that does it.
type step struct {
	sym    string // "+" create, "=" keep, "~" patch, "-" delete, "!" skip
	verb   string
	kind   string
	name   string
	detail string
	run    func(ctx context.Context, out io.Writer) error // nil: nothing to do
}

// line renders the step; plans prefix changing verbs with "would".
func (s step) line(plan bool) string {
	verb := s.verb
	if plan && s.run != nil {
		verb = "would " + verb
	}
	l := fmt.Sprintf("  %s %s %s %s", s.sym, verb, s.kind, s.name)
	if s.detail != "" {
		l += " (" + s.detail + ")"
	}
	return l
}

func keep(kind, name, detail string) step {
	return step{sym: "=", verb: "keep", kind: kind, name: name, detail: detail}
}

func skip(kind, name, reason string) step {
	return step{sym: "!", verb: "skip", kind: kind, name: name, detail: reason}
}

// tally counts what a list of executed steps did, for the summary line.
type tally struct{ created, patched, deleted, kept int }

func (t *tally) add(s step) {
	switch s.sym {
	case "+":
		t.created++
	case "~":
		t.patched++
	case "-":
		t.deleted++
	case "=":
		t.kept++
	}
}

func (t tally) String() string {
	var parts []string
	for _, x := range []struct {
		n    int
		verb string
	}{{t.created, "created"}, {t.patched, "patched"}, {t.deleted, "deleted"}, {t.kept, "kept"}} {
		if x.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", x.n, x.verb))
		}
	}
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, ", ")
}

// execute prints and runs steps in order, stopping at the first failure.
func execute(ctx context.Context, out io.Writer, steps []step) (tally, error) {
	var t tally
	for _, s := range steps {
		fmt.Fprintln(out, s.line(false))
		if s.run != nil {
			if err := s.run(ctx, out); err != nil {
				return t, err
			}
		}
		t.add(s)
	}
	return t, nil
}

// insert runs an insert with a stable request id, waits for it, treats 409 as "someone (or
// an earlier run) already made it" and checks that with fetch.
func (p *Provider) insert(ctx context.Context, out io.Writer, what string, rid *string, call func(rid *string) (*compute.Operation, error), fetch func(ctx context.Context) error) error {
	op, err := call(rid)
	if err == nil && op.Done() && opError(op.Proto()) != nil {
		// A DONE-with-error answer to a fresh request is the API replaying an earlier failed
		// operation with this request id: try once more with a new id.
		op, err = call(randomID())
	}
	if isConflict(err) {
		fmt.Fprintf(out, "    %s: already exists, using it\n", what)
		return fetch(ctx)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return p.wait(ctx, out, what, op)
}

// remove runs a delete and waits; a resource that is already gone counts as deleted.
func (p *Provider) remove(ctx context.Context, out io.Writer, what string, call func() (*compute.Operation, error)) error {
	op, err := call()
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := p.wait(ctx, out, what, op); err != nil && !opCode(err, "notFound") {
		return err
	}
	return nil
}

// randomID is a fresh request id for calls that must not be deduplicated against history.
func randomID() *string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	s := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	return &s
}
