package provision

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Step is one line of a plan: what happens to one resource, and the call that does it.
type Step struct {
	Sym    string // "+" create, "~" change, "-" delete, "=" keep
	Verb   string // create, set, delete, keep, register, …
	Kind   string // "traffic mirror session", "firewall rule", …
	Name   string
	Detail string
	// Run makes the change; nil means nothing to do (a "keep" line).
	Run func(ctx context.Context, out io.Writer) error
	// Check asks the cloud, without changing anything, whether Run would be allowed and
	// valid (EC2's DryRun); nil when the cloud offers no such check.
	Check func(ctx context.Context) *Problem
	// Source, when set, is the wanted source this step mirrors: a failure of Run then
	// leaves that source unmirrored and the run goes on; otherwise a failure stops it.
	Source string
}

// Problem is what a dry-run check found.
type Problem struct {
	Permission string // the IAM action that is denied, or ""
	Reason     string // what the cloud said
}

// Missing is a wanted source, or one of its interfaces, that is not (or would not be) mirrored.
type Missing struct {
	Source string // the KIND:VALUE that asked for it
	What   string // the interface, instance or resource concerned
	Reason string
	// Permanent marks reasons a retry cannot fix (unsupported instance type, an interface
	// type AWS refuses); the boot flow stops retrying when every reason is permanent.
	Permanent bool
}

func (m Missing) String() string {
	what := m.Source
	if m.What != "" && m.What != m.Source {
		what = m.What + " (" + m.Source + ")"
	}
	return what + ": " + m.Reason
}

// IncompleteError is a run that did what it could but left wanted sources unmirrored.
type IncompleteError struct {
	Missing []Missing
	DryRun  bool
}

func (e *IncompleteError) Error() string {
	verb := "not mirrored"
	if e.DryRun {
		verb = "would not be mirrored"
	}
	var lines []string
	for i, m := range e.Missing {
		if i == 10 {
			lines = append(lines, fmt.Sprintf("and %d more (see the ! skip lines)", len(e.Missing)-10))
			break
		}
		lines = append(lines, m.String())
	}
	return fmt.Sprintf("%s %s: %s", plural(len(e.Missing), "wanted source", "wanted sources"), verb, strings.Join(lines, "; "))
}

// Permanent reports whether no retry can fix any of the missing sources.
func (e *IncompleteError) Permanent() bool {
	for _, m := range e.Missing {
		if !m.Permanent {
			return false
		}
	}
	return len(e.Missing) > 0
}

// DeniedError is a dry run that found IAM permissions the real run would lack.
type DeniedError struct{ Actions []string }

func (e *DeniedError) Error() string {
	return "dry run: missing permissions " + strings.Join(e.Actions, ", ")
}

// Plan is everything one command would change, built before anything is changed.
type Plan struct {
	Cloud    string // "aws" or "gcp": prefixes the summary lines
	Header   string // first line: who and where
	Steps    []Step // in execution order
	Missing  []Missing
	Warnings []string // printed with "!" before the steps
	Estimate *Estimate
	// Question asks for confirmation on a terminal; "" = "Apply these changes?".
	Question string
	// Destructive plans (cleanup) run off a terminal only with --yes.
	Destructive bool
	// Done prints the last line of a successful run, given what was done.
	Done func(t Tally) string
}

// Changes counts the steps that would change something.
func (p *Plan) Changes() int {
	n := 0
	for _, s := range p.Steps {
		if s.Run != nil {
			n++
		}
	}
	return n
}

// Tally counts what the executed steps did.
type Tally struct{ Created, Changed, Deleted, Kept int }

func (t *Tally) add(s Step) {
	switch s.Sym {
	case "+":
		t.Created++
	case "~":
		t.Changed++
	case "-":
		t.Deleted++
	case "=":
		t.Kept++
	}
}

// String is "2 created, 1 changed, 3 kept" or "nothing to do".
func (t Tally) String() string {
	var parts []string
	for _, x := range []struct {
		n    int
		verb string
	}{{t.Created, "created"}, {t.Changed, "changed"}, {t.Deleted, "deleted"}, {t.Kept, "kept"}} {
		if x.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", x.n, x.verb))
		}
	}
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, ", ")
}

// Line renders a step; in a plan, changing verbs read "would …".
func (s Step) Line(plan bool) string {
	verb := s.Verb
	if plan && s.Run != nil {
		verb = "would " + verb
	}
	l := fmt.Sprintf("  %s %s %s", s.Sym, verb, s.Kind)
	if s.Name != "" {
		l += " " + s.Name
	}
	if s.Detail != "" {
		l += " (" + s.Detail + ")"
	}
	return l
}

// Apply shows, confirms and executes a plan the same way for every cloud:
//   - a dry run prints the plan, runs every step's check, prints the cost estimate and
//     returns the error the real run would return (missing sources, denied permissions);
//   - on a terminal without --yes the plan is shown and applied only after "y";
//   - otherwise the steps run in order, each printed as it runs.
//
// Any wanted source left unmirrored makes the result an *IncompleteError.
func Apply(ctx context.Context, opts Options, p *Plan) error {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	if p.Header != "" {
		fmt.Fprintln(out, p.Header)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(out, "  ! %s\n", w)
	}
	show := opts.DryRun || (opts.Interactive && !opts.Yes && p.Changes() > 0)
	if opts.DryRun {
		return dryRun(ctx, out, p)
	}
	if p.Destructive && !opts.Yes && !opts.Interactive && p.Changes() > 0 {
		printPlan(out, p)
		return fmt.Errorf("this would delete %s: pass --yes to confirm", plural(p.Changes(), "resource", "resources"))
	}
	if show {
		fmt.Fprintln(out, p.Cloud+": plan")
		printPlan(out, p)
		if p.Estimate != nil {
			p.Estimate.Print(out)
		}
		q := p.Question
		if q == "" {
			q = "Apply these changes?"
		}
		if opts.In == nil {
			return errors.New("confirmation needed but there is no input: pass --yes")
		}
		ok, err := Confirm(bufio.NewReader(opts.In), out, q)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(out, p.Cloud+": nothing changed")
			return nil
		}
	}
	missing := append([]Missing(nil), p.Missing...)
	if !show {
		for _, m := range p.Missing {
			fmt.Fprintf(out, "  ! skip %s\n", m)
		}
	}
	var t Tally
	for _, s := range p.Steps {
		fmt.Fprintln(out, s.Line(false))
		if s.Run != nil {
			if err := s.Run(ctx, out); err != nil {
				if s.Source == "" || ctx.Err() != nil {
					return err
				}
				fmt.Fprintf(out, "  ! failed: %v\n", err)
				missing = append(missing, Missing{Source: s.Source, What: s.Name, Reason: err.Error()})
				continue
			}
		}
		t.add(s)
	}
	if p.Done != nil {
		fmt.Fprintln(out, p.Done(t))
	}
	if len(missing) > 0 {
		return &IncompleteError{Missing: missing}
	}
	return nil
}

func printPlan(out io.Writer, p *Plan) {
	for _, m := range p.Missing {
		fmt.Fprintf(out, "  ! skip %s\n", m)
	}
	for _, s := range p.Steps {
		fmt.Fprintln(out, s.Line(true))
	}
}

func dryRun(ctx context.Context, out io.Writer, p *Plan) error {
	printPlan(out, p)
	var denied []string
	missing := append([]Missing(nil), p.Missing...)
	for _, s := range p.Steps {
		if s.Check == nil || s.Run == nil {
			continue
		}
		pr := s.Check(ctx)
		switch {
		case pr == nil:
		case pr.Permission != "":
			fmt.Fprintf(out, "  ! missing permission %s (to %s %s %s): %s\n", pr.Permission, s.Verb, s.Kind, s.Name, pr.Reason)
			if !contains(denied, pr.Permission) {
				denied = append(denied, pr.Permission)
			}
		case s.Source != "":
			fmt.Fprintf(out, "  ! %s %s %s would fail: %s\n", s.Verb, s.Kind, s.Name, pr.Reason)
			missing = append(missing, Missing{Source: s.Source, What: s.Name, Reason: pr.Reason})
		default:
			fmt.Fprintf(out, "  ! %s %s %s would fail: %s\n", s.Verb, s.Kind, s.Name, pr.Reason)
		}
	}
	if p.Estimate != nil {
		p.Estimate.Print(out)
	}
	fmt.Fprintf(out, "%s: dry run, nothing changed (%s to change)\n", p.Cloud, plural(p.Changes(), "resource", "resources"))
	var errs []error
	if len(denied) > 0 {
		errs = append(errs, &DeniedError{Actions: denied})
	}
	if len(missing) > 0 {
		errs = append(errs, &IncompleteError{Missing: missing, DryRun: true})
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Confirm asks a yes/no question; only y or yes accepts.
func Confirm(in *bufio.Reader, out io.Writer, question string) (bool, error) {
	fmt.Fprintf(out, "%s [y/N]: ", question)
	line, err := in.ReadString('\n')
	if err != nil && (!errors.Is(err, io.EOF) || line == "") {
		return false, fmt.Errorf("read answer: %w", err)
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}
