package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/metlo-labs/metlo-appliance/provision"
	provaws "github.com/metlo-labs/metlo-appliance/provision/aws"
	"github.com/metlo-labs/metlo-appliance/provision/gcp"
)

// flagScope says which command a cloud's flags are registered on: each command shows only
// the flags it uses.
type flagScope int

const (
	scopeProvision flagScope = iota // provision: everything
	scopeManage                     // list, remove: who and where, ownership
	scopeCleanup                    // cleanup: as list, plus deleting whole fleets
	scopeDoctor                     // doctor: who and where
)

// cloudFactory registers a cloud's own flags on a command and returns the constructor that
// builds its provider from them once the command runs.
type cloudFactory func(fs *pflag.FlagSet, scope flagScope) func(ctx context.Context) (provision.Provider, error)

// clouds is filled by each cloud's cloud_*.go file.
var clouds = map[string]cloudFactory{}

func cloudNames() string {
	names := make([]string, 0, len(clouds))
	for n := range clouds {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "|")
}

// provisionFlags are the flags every cloud command shares.
type provisionFlags struct {
	cloud      string
	opts       provision.Options
	watch      time.Duration
	prices     []string
	metricsURL string
	newByCloud map[string]func(context.Context) (provision.Provider, error)
}

// envExempt are flags never read from METLO_* variables: confirmations and dry runs are
// asked for on the command line, where they can be seen.
var envExempt = []string{"help", "yes", "dry-run"}

func addProvisionFlags(cmd *cobra.Command, scope flagScope) *provisionFlags {
	pf := &provisionFlags{newByCloud: map[string]func(context.Context) (provision.Provider, error){}}
	fs := cmd.Flags()
	fs.StringVar(&pf.cloud, "cloud", "", "cloud to act on: "+cloudNames()+" (env METLO_CLOUD)")
	fs.StringVar(&pf.opts.Region, "region", "", "cloud region (default: discovered from instance metadata; env METLO_REGION)")
	if scope != scopeDoctor {
		fs.BoolVar(&pf.opts.Yes, "yes", false, "do not ask for confirmation")
	}
	switch scope {
	case scopeProvision:
		fs.StringSliceVar(&pf.opts.Sources, "source", nil, "what to mirror, KIND:VALUE (repeatable or comma-separated; env METLO_SOURCES, comma- or space-separated)")
		fs.BoolVar(&pf.opts.DryRun, "dry-run", false, "print the plan, check permissions and estimate the cost; change nothing")
		fs.DurationVar(&pf.watch, "watch", 0, "keep reconciling at this interval (e.g. 5m); 0 runs once")
		fs.StringVar(&pf.opts.Target, "target", "", "mirror target kind (aws: eni|nlb, gcp: ilb)")
		fs.IntVar(&pf.opts.HealthPort, "health-port", 9731, "port of the appliance's /readyz for load-balancer health checks")
		fs.StringSliceVar(&pf.prices, "price", nil, "override a list price of the cost estimate, KEY=USD (repeatable or comma-separated; keys in docs/provision-aws.md and docs/provision-gcp.md)")
		fs.Float64Var(&pf.opts.MirroredGBPerMonth, "estimate-gb-month", 0, "expected mirrored traffic in GB per month, for the data-dependent part of the cost estimate")
	case scopeDoctor:
		fs.StringVar(&pf.metricsURL, "metrics-url", "http://127.0.0.1:9731/metrics", "the collector's /metrics, to see packets arrive")
		fs.IntVar(&pf.opts.HealthPort, "health-port", 9731, "port of the appliance's /readyz the load balancer checks")
	}
	names := make([]string, 0, len(clouds))
	for name := range clouds {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pf.newByCloud[name] = clouds[name](fs, scope)
	}
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if k, ok := provisionAliases[name]; ok {
			return pflag.NormalizedName(k)
		}
		return pflag.NormalizedName(name)
	})
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error { return applyEnv(cmd.Flags()) }
	return pf
}

// provisionAliases are old flag names that keep working, hidden: --aws-region was a second
// way to say --region.
var provisionAliases = map[string]string{"aws-region": "region"}

// envName is the METLO_* variable of a flag: --aws-vni → METLO_AWS_VNI.
func envName(flag string) string {
	return "METLO_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv fills every flag the command line left unset from its METLO_* variable, like
// collect does; --source also reads METLO_SOURCES.
func applyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || contains(envExempt, f.Name) {
			return
		}
		names := []string{envName(f.Name)}
		for old, k := range provisionAliases {
			if k == f.Name {
				names = append(names, envName(old))
			}
		}
		if f.Name == "source" {
			names = append(names, "METLO_SOURCES")
		}
		for _, n := range names {
			v, ok := os.LookupEnv(n)
			if !ok || strings.TrimSpace(v) == "" {
				continue
			}
			var vals []string
			switch {
			case f.Name == "source":
				vals = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\n' || r == '\t' })
			case f.Value.Type() == "stringArray":
				vals = strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == '\n' })
			default:
				vals = []string{strings.TrimSpace(v)}
			}
			for _, x := range vals {
				if err := fs.Set(f.Name, x); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", n, err))
				}
			}
		}
	})
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

// provider resolves --cloud to a provider and fills the terminal-dependent options.
func (pf *provisionFlags) provider(cmd *cobra.Command) (provision.Provider, provision.Options, error) {
	build, ok := pf.newByCloud[pf.cloud]
	if !ok {
		return nil, pf.opts, usageError(fmt.Errorf("--cloud must be one of %s, got %q", cloudNames(), pf.cloud))
	}
	opts := pf.opts
	opts.In, opts.Out = cmd.InOrStdin(), cmd.OutOrStdout()
	opts.Interactive = cmd.InOrStdin() == os.Stdin && term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
	if len(pf.prices) > 0 || opts.MirroredGBPerMonth != 0 {
		prices, err := provision.ParsePrices(pf.prices)
		if err != nil {
			return nil, opts, usageError(err)
		}
		if opts.MirroredGBPerMonth < 0 {
			return nil, opts, usageError(fmt.Errorf("--estimate-gb-month %v: want 0 or more", opts.MirroredGBPerMonth))
		}
		opts.Prices = prices
	}
	p, err := build(cmd.Context())
	return p, opts, err
}

const provisionLong = `provision makes the cloud mirror the sources to this appliance: it looks everything up,
builds a plan, shows it (with --dry-run, or on a terminal before asking) and applies it.
Runs are safe to repeat; a wanted source left unmirrored makes the exit status non-zero.
Every flag can also come from a METLO_* variable (--aws-vni: METLO_AWS_VNI, --source:
METLO_SOURCES), except --yes and --dry-run.

Sources on AWS (--cloud aws):
` + provaws.SourceHelp + `

Sources on GCP (--cloud gcp):
` + gcp.SourceHelp

const provisionExample = `  metlo-appliance provision --cloud aws --source tag:app=api --source ecs:prod/web
  metlo-appliance provision --cloud aws --source instance:i-0abc --target nlb --dry-run --estimate-gb-month 2000
  metlo-appliance provision --cloud gcp --source subnet:web --source tag:api --watch 5m
  METLO_SOURCES="tag:app=api ecs:prod/web" metlo-appliance provision --cloud aws --yes`

func newProvisionCmds() []*cobra.Command {
	prov := &cobra.Command{
		Use:     "provision --cloud aws|gcp [--source KIND:VALUE]...",
		Short:   "Create or reconcile the cloud mirroring that sends traffic to this appliance",
		Long:    provisionLong,
		Example: provisionExample,
		Args:    cobra.NoArgs,
	}
	ppf := addProvisionFlags(prov, scopeProvision)
	prov.RunE = func(cmd *cobra.Command, _ []string) error {
		p, opts, err := ppf.provider(cmd)
		if err != nil {
			return err
		}
		if ppf.watch <= 0 {
			return p.Reconcile(cmd.Context(), opts)
		}
		return watchLoop(cmd.Context(), ppf.watch, func(ctx context.Context) error { return p.Reconcile(ctx, opts) })
	}

	list := &cobra.Command{Use: "list --cloud aws|gcp", Short: "Show the mirroring this appliance owns", Args: cobra.NoArgs}
	lpf := addProvisionFlags(list, scopeManage)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		p, opts, err := lpf.provider(cmd)
		if err != nil {
			return err
		}
		return p.List(cmd.Context(), opts)
	}

	remove := &cobra.Command{Use: "remove --cloud aws|gcp SESSION-ID|SOURCE", Short: "Stop mirroring one session or source", Args: cobra.ExactArgs(1)}
	rpf := addProvisionFlags(remove, scopeManage)
	remove.RunE = func(cmd *cobra.Command, args []string) error {
		p, opts, err := rpf.provider(cmd)
		if err != nil {
			return err
		}
		return p.Remove(cmd.Context(), opts, args[0])
	}

	cleanup := &cobra.Command{Use: "cleanup --cloud aws|gcp", Short: "Delete every cloud resource this appliance created", Args: cobra.NoArgs}
	cpf := addProvisionFlags(cleanup, scopeCleanup)
	cleanup.RunE = func(cmd *cobra.Command, _ []string) error {
		p, opts, err := cpf.provider(cmd)
		if err != nil {
			return err
		}
		return p.Cleanup(cmd.Context(), opts)
	}
	return []*cobra.Command{prov, list, remove, cleanup, newDoctorCmd()}
}

// watchLoop runs fn now and then every interval until ctx ends; a failed round is logged
// and retried at the next tick rather than ending the watch.
func watchLoop(ctx context.Context, interval time.Duration, fn func(context.Context) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := fn(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintln(os.Stderr, "reconcile failed (retrying at the next interval):", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// newDoctorCmd returns `metlo-appliance doctor`, which checks each link of the mirroring chain.
func newDoctorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor --cloud aws|gcp",
		Short: "Check every link from the mirrored sources to this collector and say what is broken",
		Long: `doctor checks what "traffic not appearing" can come from, with the cloud's APIs and the
collector's own counters: the mirror sessions or policy and their sources (and, on AWS,
whether another session takes the packets first), the instance types, the target and the
load balancer's health, the security group and network ACLs (AWS: UDP 4789 from the
sources) or the health-check firewall rule (GCP), and whether packets reach the collector.
It exits non-zero when a link is broken.`,
		Args: cobra.NoArgs,
	}
	pf := addProvisionFlags(cmd, scopeDoctor)
	sample := cmd.Flags().Duration("sample", 5*time.Second, "how long to watch the collector's packet counters")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		p, opts, err := pf.provider(cmd)
		if err != nil {
			return err
		}
		d, ok := p.(provision.Doctor)
		if !ok {
			return fmt.Errorf("doctor is not available for %s", pf.cloud)
		}
		rep, err := d.Doctor(cmd.Context(), opts, provision.DoctorOptions{MetricsURL: pf.metricsURL, Sample: *sample})
		if err != nil {
			return err
		}
		rep.Print(cmd.OutOrStdout())
		return rep.Err()
	}
	return cmd
}
