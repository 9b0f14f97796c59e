package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// cloudFactory registers a cloud's own flags on a command and returns the constructor that
// builds its provider from them once the command runs.
type cloudFactory func(fs *pflag.FlagSet) func(ctx context.Context) (provision.Provider, error)

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
	newByCloud map[string]func(context.Context) (provision.Provider, error)
}

func addProvisionFlags(cmd *cobra.Command, withPlan bool) *provisionFlags {
	pf := &provisionFlags{newByCloud: map[string]func(context.Context) (provision.Provider, error){}}
	fs := cmd.Flags()
	fs.StringVar(&pf.cloud, "cloud", "", "cloud to act on: "+cloudNames())
	fs.StringVar(&pf.opts.Region, "region", "", "cloud region (default: discovered from instance metadata)")
	fs.BoolVar(&pf.opts.Yes, "yes", false, "do not ask for confirmation")
	if withPlan {
		fs.StringArrayVar(&pf.opts.Sources, "source", nil, "what to mirror, KIND:VALUE (repeatable)")
		fs.BoolVar(&pf.opts.DryRun, "dry-run", false, "print the plan and check permissions, change nothing")
		fs.DurationVar(&pf.watch, "watch", 0, "keep reconciling at this interval (e.g. 5m); 0 runs once")
		fs.StringVar(&pf.opts.Target, "target", "", "mirror target kind (aws: eni|nlb, gcp: ilb)")
		fs.IntVar(&pf.opts.HealthPort, "health-port", 9731, "port of the appliance's /readyz for load-balancer health checks")
	}
	for name, f := range clouds {
		pf.newByCloud[name] = f(fs)
	}
	return pf
}

// provider resolves --cloud to a provider and fills the terminal-dependent options.
func (pf *provisionFlags) provider(cmd *cobra.Command) (provision.Provider, provision.Options, error) {
	build, ok := pf.newByCloud[pf.cloud]
	if !ok {
		return nil, pf.opts, fmt.Errorf("--cloud must be one of %s, got %q", cloudNames(), pf.cloud)
	}
	opts := pf.opts
	opts.In, opts.Out = cmd.InOrStdin(), cmd.OutOrStdout()
	opts.Interactive = cmd.InOrStdin() == os.Stdin && term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
	p, err := build(cmd.Context())
	return p, opts, err
}

func newProvisionCmds() []*cobra.Command {
	prov := &cobra.Command{
		Use:   "provision --cloud aws|gcp [--source KIND:VALUE]...",
		Short: "Create or reconcile the cloud mirroring that sends traffic to this appliance",
		Args:  cobra.NoArgs,
	}
	ppf := addProvisionFlags(prov, true)
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
	lpf := addProvisionFlags(list, false)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		p, opts, err := lpf.provider(cmd)
		if err != nil {
			return err
		}
		return p.List(cmd.Context(), opts)
	}

	remove := &cobra.Command{Use: "remove --cloud aws|gcp SESSION-ID|SOURCE", Short: "Stop mirroring one session or source", Args: cobra.ExactArgs(1)}
	rpf := addProvisionFlags(remove, false)
	remove.RunE = func(cmd *cobra.Command, args []string) error {
		p, opts, err := rpf.provider(cmd)
		if err != nil {
			return err
		}
		return p.Remove(cmd.Context(), opts, args[0])
	}

	cleanup := &cobra.Command{Use: "cleanup --cloud aws|gcp", Short: "Delete every cloud resource this appliance created", Args: cobra.NoArgs}
	cpf := addProvisionFlags(cleanup, false)
	cleanup.RunE = func(cmd *cobra.Command, _ []string) error {
		p, opts, err := cpf.provider(cmd)
		if err != nil {
			return err
		}
		return p.Cleanup(cmd.Context(), opts)
	}
	return []*cobra.Command{prov, list, remove, cleanup}
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
