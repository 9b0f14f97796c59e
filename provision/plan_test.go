package provision

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// planOf is a plan of four steps: a keep, a create that works, a source step that fails and a
// last create; ran records which Run functions ran.
func planOf(ran *[]string) *Plan {
	step := func(sym, verb, name, source string, fail bool) Step {
		s := Step{Sym: sym, Verb: verb, Kind: "thing", Name: name, Source: source}
		if sym != "=" {
			s.Run = func(context.Context, io.Writer) error {
				*ran = append(*ran, name)
				if fail {
					return errors.New(name + " refused")
				}
				return nil
			}
			s.Check = func(context.Context) *Problem {
				if fail {
					return &Problem{Permission: "svc:Make"}
				}
				return nil
			}
		}
		return s
	}
	return &Plan{Cloud: "test", Steps: []Step{step("=", "keep", "a", "", false), step("+", "create", "b", "", false),
		step("+", "create", "c", "kind:c", true), step("+", "create", "d", "", false)},
		Done: func(t Tally) string { return "test: " + t.String() }}
}

func TestApplyModes(t *testing.T) {
	var ran []string
	var out bytes.Buffer
	// A real run: the failing source step is recorded, the others run, the error says which.
	err := Apply(context.Background(), Options{Out: &out}, planOf(&ran))
	var inc *IncompleteError
	if !errors.As(err, &inc) || len(inc.Missing) != 1 || inc.Missing[0].Source != "kind:c" || strings.Join(ran, ",") != "b,c,d" {
		t.Fatalf("run: %v, ran %v\n%s", err, ran, out.String())
	}
	if !strings.Contains(out.String(), "test: 2 created, 1 kept") {
		t.Errorf("summary:\n%s", out.String())
	}
	// A dry run runs the checks, not the steps, and returns what the real run would.
	ran, out = nil, bytes.Buffer{}
	err = Apply(context.Background(), Options{Out: &out, DryRun: true}, planOf(&ran))
	var denied *DeniedError
	if !errors.As(err, &denied) || len(ran) != 0 || !strings.Contains(out.String(), "would create thing b") || !strings.Contains(out.String(), "missing permission svc:Make") {
		t.Fatalf("dry run: %v, ran %v\n%s", err, ran, out.String())
	}
	// On a terminal the plan is shown and applied only after yes.
	ran, out = nil, bytes.Buffer{}
	if err := Apply(context.Background(), Options{Out: &out, In: strings.NewReader("n\n"), Interactive: true}, planOf(&ran)); err != nil || len(ran) != 0 ||
		!strings.Contains(out.String(), "Apply these changes? [y/N]") || !strings.Contains(out.String(), "test: nothing changed") {
		t.Fatalf("declined: %v, ran %v\n%s", err, ran, out.String())
	}
	// A destructive plan off a terminal needs --yes.
	p := planOf(&ran)
	p.Destructive = true
	if err := Apply(context.Background(), Options{Out: &out}, p); err == nil || !strings.Contains(err.Error(), "pass --yes") {
		t.Fatalf("destructive without yes: %v", err)
	}
	// A failing step that is not tied to a source stops the run.
	ran = nil
	p = planOf(&ran)
	p.Steps[2].Source = ""
	if err := Apply(context.Background(), Options{Out: &out}, p); err == nil || strings.Join(ran, ",") != "b,c" {
		t.Fatalf("infrastructure failure: %v, ran %v", err, ran)
	}
}

func TestPricesAndEstimate(t *testing.T) {
	p, err := ParsePrices([]string{"aws-nlb-hour=1"})
	if err != nil || p["aws-nlb-hour"] != 1 || p["aws-nlcu-hour"] != 0.006 {
		t.Fatalf("prices %v %v", p, err)
	}
	for _, bad := range []string{"aws-nlb-hour", "nope=1", "aws-nlb-hour=-1", "aws-nlb-hour=x"} {
		if _, err := ParsePrices([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	var e Estimate
	e.Add(p, "lb", HoursPerMonth, "aws-nlb-hour")
	e.Add(p, "nothing", 0, "aws-nlb-hour")
	var out bytes.Buffer
	e.Print(&out)
	if len(e.Lines) != 1 || e.Total() != 730 || !strings.Contains(out.String(), "$730.00") {
		t.Fatalf("estimate %+v\n%s", e, out.String())
	}
}
