package gcp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	compute "cloud.google.com/go/compute/apiv1"

	"github.com/metlo-labs/metlo-appliance/provision"
)

func keep(kind, name, detail string) provision.Step {
	return provision.Step{Sym: "=", Verb: "keep", Kind: kind, Name: name, Detail: detail}
}

// errGone is what fetch returns when the resource does not exist.
var errGone = errors.New("resource does not exist")

// insert runs an insert with a stable request id, waits for it, treats 409 as "someone (or
// an earlier run) already made it" and checks with fetch that the resource exists. Compute
// answers a repeated request id with the original operation for about an hour — even when
// that resource has been deleted since (provision, cleanup, provision) — so a finished
// operation proves nothing: a resource missing afterwards is inserted again with a fresh id.
func (p *Provider) insert(ctx context.Context, out io.Writer, what string, rid *string, call func(rid *string) (*compute.Operation, error), fetch func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
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
		if err := p.wait(ctx, out, what, op); err != nil {
			return err
		}
		err = fetch(ctx)
		if !errors.Is(err, errGone) {
			return err
		}
		if attempt == 2 {
			return fmt.Errorf("%s: the operation finished but the resource does not exist", what)
		}
		fmt.Fprintf(out, "    %s: the API replayed an earlier operation of a resource deleted since; inserting again\n", what)
		rid = randomID()
	}
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
