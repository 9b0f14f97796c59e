package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// Placeholder ids stand in for resources a dry run would create, so the plan and the DryRun
// permission checks can still name them.
const (
	placeholderTarget = "tmt-00000000000000000"
	placeholderFilter = "tmf-00000000000000000"
)

// run is one reconcile pass: its mode, its counters and the permission problems it found.
type run struct {
	*env
	dry                             bool
	created, kept, removed, skipped int
	denied                          []string
}

// say prints one progress or plan line; in a dry run actions read "would …".
func (r *run) say(sym, verb, format string, args ...any) {
	if r.dry && sym != "=" && sym != "!" {
		verb = "would " + verb
	}
	fmt.Fprintf(r.out, "  %s %s %s\n", sym, verb, fmt.Sprintf(format, args...))
}

// checkPerm runs an EC2 call with DryRun set and records whether IAM would allow it.
func (r *run) checkPerm(action string, call func() error) {
	err := call()
	switch code := apiCode(err); {
	case code == "DryRunOperation":
		return
	case code == "UnauthorizedOperation" || code == "AccessDenied" || code == "AccessDeniedException":
		r.denied = append(r.denied, action)
		fmt.Fprintf(r.out, "  ! missing permission %s: %s\n", action, apiMessage(err))
	case err == nil:
		fmt.Fprintf(r.out, "  ! %s: DryRun was not honoured\n", action)
	default:
		fmt.Fprintf(r.out, "  ! %s: permission check inconclusive: %s\n", action, apiMessage(err))
	}
}

// createVerified creates with a deterministic ClientToken and makes sure the answer is a live
// resource: EC2 replays a token's first result even after that resource was deleted (a
// `remove` or `cleanup` followed by a new run), so a replay of a dead id retries with a
// salted token.
func (r *run) createVerified(ctx context.Context, what string, create func(token string) (string, error), exists func(id string) (bool, error), parts ...string) (string, error) {
	for attempt := range 3 {
		id, err := create(r.clientToken(attempt, parts...))
		if err != nil {
			return "", err
		}
		ok, err := exists(id)
		if err != nil {
			return "", fmt.Errorf("look up new %s %s: %w", what, id, err)
		}
		if ok {
			return id, nil
		}
		r.log.Info("client token replayed a deleted resource, retrying with a fresh token", "what", what, "id", id)
	}
	return "", fmt.Errorf("create %s: every client token replayed a deleted resource", what)
}

func notFoundIsNil(err error) error {
	if isNotFound(err) {
		return nil
	}
	return err
}

// parseSources parses raw KIND:VALUE strings with AWS's kinds.
func parseSources(raw []string) ([]provision.Source, error) {
	var out []provision.Source
	var errs []error
	for _, s := range raw {
		src, err := provision.ParseSource(strings.TrimSpace(s), SourceKinds...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, src)
	}
	return out, errors.Join(errs...)
}

// errNoSources explains what to pass when there is no terminal to ask on.
var errNoSources = errors.New("no sources to mirror: pass --source KIND:VALUE (repeatable) with KIND one of " +
	"instance:i-…, eni:eni-…, tag:Key=Value, ecs:CLUSTER/SERVICE, alb:NAME|ARN; " +
	"or run on a terminal for guided mode. Off EC2 also pass --region/--aws-region, --aws-instance-id, --aws-eni-id, --aws-vpc-id, --aws-subnet-id")

// Reconcile makes the mirroring match the sources: target, filter, one session per source ENI.
func (p *Provider) Reconcile(ctx context.Context, opts provision.Options) error {
	srcs, err := parseSources(opts.Sources)
	if err != nil {
		return err
	}
	rules, err := ParseRules(p.cfg.FilterRules)
	if err != nil {
		return err
	}
	if len(srcs) == 0 {
		if !opts.Interactive {
			return errNoSources
		}
		return p.guided(ctx, opts, rules)
	}
	e, err := p.open(ctx, opts)
	if err != nil {
		return err
	}
	return e.reconcile(ctx, opts, srcs, rules, opts.DryRun)
}

func (e *env) reconcile(ctx context.Context, opts provision.Options, srcs []provision.Source, rules []Rule, dry bool) error {
	kind, err := targetKind(opts.Target)
	if err != nil {
		return err
	}
	r := &run{env: e, dry: dry}
	mode := ""
	if dry {
		mode = " (plan: nothing is changed)"
	}
	fmt.Fprintf(e.out, "aws: appliance %s in %s, %s target, VNI %d%s\n", e.self.InstanceID, e.self.Region, kind, e.vni, mode)
	targetID, err := r.ensureTarget(ctx, kind, opts.HealthPort)
	if err != nil {
		return err
	}
	filterID, err := r.ensureFilter(ctx, rules)
	if err != nil {
		return err
	}
	res := r.resolve(ctx, srcs)
	if err := r.reconcileSessions(ctx, targetID, filterID, res); err != nil {
		return err
	}
	noun := "sources"
	if r.skipped == 1 {
		noun = "source"
	}
	if dry {
		fmt.Fprintf(e.out, "aws: would have %d sessions (%d to create, %d kept, %d to remove), %d %s skipped\n",
			r.created+r.kept, r.created, r.kept, r.removed, r.skipped, noun)
		if len(r.denied) > 0 {
			return fmt.Errorf("dry run: missing permissions %s (see docs/provision-aws.md for the policy)", strings.Join(r.denied, ", "))
		}
		return nil
	}
	fmt.Fprintf(e.out, "aws: %d sessions ok (%d created, %d kept, %d removed), %d %s skipped\n",
		r.created+r.kept, r.created, r.kept, r.removed, r.skipped, noun)
	return nil
}

func targetKind(s string) (string, error) {
	switch s {
	case "", "eni":
		return "eni", nil
	case "nlb":
		return "nlb", nil
	}
	return "", fmt.Errorf("--target %q: want eni or nlb on aws", s)
}
