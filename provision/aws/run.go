package aws

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// Placeholder ids stand in for resources the plan creates before the steps that use them,
// so the plan and the DryRun checks can name them.
const (
	placeholderTarget = "tmt-00000000000000000"
	placeholderFilter = "tmf-00000000000000000"
)

// planner builds one reconcile plan. Steps run later, in order; ids holds what earlier steps
// found or created, read by later steps when they run.
type planner struct {
	*env
	plan *provision.Plan
	ids  struct {
		target, filter, lb, tg string
	}
	sessions struct{ created, kept, changed, removed int }
	fleetSGs []string // the fleet members' security groups, once planFleet knows them
}

func (pl *planner) add(s provision.Step) { pl.plan.Steps = append(pl.plan.Steps, s) }

func (pl *planner) warn(format string, args ...any) {
	pl.plan.Warnings = append(pl.plan.Warnings, fmt.Sprintf(format, args...))
}

func (pl *planner) miss(spec, what, reason string, permanent bool) {
	pl.plan.Missing = append(pl.plan.Missing, provision.Missing{Source: spec, What: what, Reason: reason, Permanent: permanent})
}

// dryCheck runs an EC2 call with DryRun set and says what the real call would meet.
func (pl *planner) dryCheck(action string, call func() error) *provision.Problem {
	err := call()
	switch {
	case apiCode(err) == "DryRunOperation":
		return nil
	case isDenied(err):
		return &provision.Problem{Permission: action, Reason: apiMessage(err)}
	case err == nil:
		return &provision.Problem{Reason: "DryRun was not honoured"}
	case isNotFound(err) && (strings.Contains(err.Error(), placeholderTarget) || strings.Contains(err.Error(), placeholderFilter)):
		// Allowed; the API only stopped at the resource an earlier step creates.
		return nil
	}
	return &provision.Problem{Reason: apiMessage(err)}
}

// errNoSources explains what to pass when there is no terminal to ask on.
var errNoSources = errors.New("no sources to mirror: pass --source KIND:VALUE (repeatable):\n" + SourceHelp +
	"\nor run on a terminal for guided mode. Off EC2 also pass --region, --aws-instance-id, --aws-eni-id, --aws-vpc-id, --aws-subnet-id")

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
	if err := p.validate(opts); err != nil {
		return err
	}
	hint := ""
	if len(srcs) == 0 {
		if !opts.Interactive {
			return errNoSources
		}
		opts.In = bufio.NewReader(opts.In)
		q := *p
		if srcs, hint, err = q.guided(ctx, &opts); err != nil {
			return err
		}
		p = &q
	}
	e, err := p.open(ctx, opts)
	if err != nil {
		return err
	}
	plan, err := e.plan(ctx, opts, srcs, rules)
	if err != nil {
		return err
	}
	if done := plan.Done; hint != "" {
		plan.Done = func(t provision.Tally) string { return done(t) + "\n" + hint }
	}
	return provision.Apply(ctx, opts, plan)
}

// validate refuses settings the API would reject, before any call.
func (p *Provider) validate(opts provision.Options) error {
	kind, err := targetKind(opts.Target)
	if err != nil {
		return err
	}
	if n := p.cfg.PacketLength; n != 0 {
		maxLen := 65535
		if kind == "nlb" {
			maxLen = 8500 // CreateTrafficMirrorSession: valid values 1-8500 for NLB targets
		}
		if n < 1 || n > maxLen {
			return fmt.Errorf("--aws-packet-length %d: want 1-%d for a %s target (0 mirrors whole packets)", n, maxLen, kind)
		}
	}
	if _, err := parseSessionNumber(p.cfg.SessionNumber); err != nil {
		return err
	}
	if p.cfg.Fleet.Size > 0 && kind != "nlb" {
		return fmt.Errorf("a fleet (--aws-fleet-size) needs --target nlb")
	}
	return nil
}

// plan looks everything up and returns what reconciling would do.
func (e *env) plan(ctx context.Context, opts provision.Options, srcs []provision.Source, rules []Rule) (*provision.Plan, error) {
	kind, _ := targetKind(opts.Target)
	pl := &planner{env: e, plan: &provision.Plan{Cloud: "aws"}}
	owner := "appliance " + e.self.InstanceID
	if e.fleet() {
		owner = "fleet " + e.owner.value + " (member " + e.self.InstanceID + ")"
	}
	pl.plan.Header = fmt.Sprintf("aws: %s in %s, %s target, VNI %d", owner, e.self.Region, kind, e.vni)
	prices, err := pricesOf(opts)
	if err != nil {
		return nil, err
	}
	est := &provision.Estimate{}
	pl.plan.Estimate = est
	if err := pl.planTarget(ctx, kind, opts.HealthPort, prices, est); err != nil {
		return nil, err
	}
	filters, err := e.listFilters(ctx)
	if err != nil {
		return nil, err
	}
	pl.planFilter(ctx, filters, rules)
	res := e.resolve(ctx, srcs)
	if err := pl.planSessions(ctx, kind, res, filters, rules, prices, est); err != nil {
		return nil, err
	}
	if err := pl.planSecurityGroup(ctx, kind, res, opts.HealthPort); err != nil {
		return nil, err
	}
	if opts.MirroredGBPerMonth > 0 {
		if kind == "nlb" {
			est.Add(prices, "NLB capacity for the mirrored traffic (NLCU-hours ≈ GB)", opts.MirroredGBPerMonth, "aws-nlcu-hour")
		}
		est.Notes = append(est.Notes, fmt.Sprintf("mirrored copies crossing an AZ are billed as regional data transfer: up to $%.2f for %s GB if all of it does [aws-cross-az-gb]",
			opts.MirroredGBPerMonth*prices["aws-cross-az-gb"], trimGB(opts.MirroredGBPerMonth)))
	} else {
		est.Notes = append(est.Notes, "data-dependent charges (NLCUs, cross-AZ transfer) need --estimate-gb-month")
	}
	pl.plan.Done = func(t provision.Tally) string {
		return fmt.Sprintf("aws: %d sessions mirroring (%d created, %d changed, %d kept), %d removed; %s",
			pl.sessions.created+pl.sessions.changed+pl.sessions.kept, pl.sessions.created, pl.sessions.changed, pl.sessions.kept, pl.sessions.removed, t)
	}
	return pl.plan, nil
}

func pricesOf(opts provision.Options) (provision.Prices, error) {
	if opts.Prices != nil {
		return opts.Prices, nil
	}
	return provision.ParsePrices(nil)
}

func trimGB(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", f), "0"), ".")
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
