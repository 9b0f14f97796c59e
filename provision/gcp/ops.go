package gcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
)

// httpCode returns the HTTP status of an API error, or 0.
func httpCode(err error) int {
	var ae *apierror.APIError
	if errors.As(err, &ae) && ae.HTTPCode() > 0 {
		return ae.HTTPCode()
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func isNotFound(err error) bool { return httpCode(err) == 404 }
func isConflict(err error) bool { return httpCode(err) == 409 }

// wait polls an operation until it is DONE, printing its status while it is not, and turns
// an operation that finished with errors into one clear error.
func (p *Provider) wait(ctx context.Context, out io.Writer, what string, op *compute.Operation) error {
	interval := p.cfg.PollInterval
	last := computepb.Operation_Status(-1)
	for {
		pr := op.Proto()
		if pr.GetStatus() == computepb.Operation_DONE {
			if err := opError(pr); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		}
		if pr.GetStatus() != last {
			last = pr.GetStatus()
			fmt.Fprintf(out, "    waiting for operation %s (%s)\n", op.Name(), last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for operation %s: %w", what, op.Name(), ctx.Err())
		case <-time.After(interval):
		}
		if interval = interval * 3 / 2; interval > 10*time.Second {
			interval = 10 * time.Second
		}
		if err := op.Poll(ctx); err != nil {
			if oe := opError(op.Proto()); oe != nil {
				return fmt.Errorf("%s: %w", what, oe)
			}
			return fmt.Errorf("%s: poll operation %s: %w", what, op.Name(), err)
		}
	}
}

// operationError is an operation that finished with errors.
type operationError struct {
	Name     string
	HTTPCode int
	Codes    []string
	Messages []string
}

func (e *operationError) Error() string {
	parts := make([]string, len(e.Codes))
	for i := range e.Codes {
		parts[i] = e.Codes[i] + ": " + e.Messages[i]
	}
	return fmt.Sprintf("operation %s failed (HTTP %d): %s", e.Name, e.HTTPCode, strings.Join(parts, "; "))
}

func opError(op *computepb.Operation) error {
	errs := op.GetError().GetErrors()
	if len(errs) == 0 && (op.HttpErrorStatusCode == nil || op.GetHttpErrorStatusCode() < 300) {
		return nil
	}
	e := &operationError{Name: op.GetName(), HTTPCode: int(op.GetHttpErrorStatusCode())}
	for _, x := range errs {
		e.Codes = append(e.Codes, x.GetCode())
		e.Messages = append(e.Messages, x.GetMessage())
	}
	if len(errs) == 0 {
		e.Codes, e.Messages = []string{"error"}, []string{op.GetHttpErrorMessage()}
	}
	return e
}

// opCode reports whether err is an operation error carrying code (e.g. "memberAlreadyExists").
func opCode(err error, code string) bool {
	var oe *operationError
	if errors.As(err, &oe) {
		for _, c := range oe.Codes {
			if c == code {
				return true
			}
		}
	}
	return false
}
