package main

import (
	"context"
	"time"

	"github.com/spf13/pflag"

	"github.com/metlo-labs/metlo-appliance/provision"
	"github.com/metlo-labs/metlo-appliance/provision/gcp"
)

func init() { clouds["gcp"] = gcpFlags }

// gcpFlags registers the --gcp-… flags a command uses and returns the constructor of the GCP
// provider built from them.
func gcpFlags(fs *pflag.FlagSet, scope flagScope) func(ctx context.Context) (provision.Provider, error) {
	c := gcp.Config{Priority: gcp.DefaultPriority}
	fs.StringVar(&c.Project, "gcp-project", "", "gcp: project (default: discovered from the metadata server)")
	fs.StringVar(&c.Zone, "gcp-zone", "", "gcp: zone of this appliance (default: discovered)")
	fs.StringVar(&c.Instance, "gcp-instance", "", "gcp: instance name of this appliance (default: discovered)")
	fs.StringVar(&c.Network, "gcp-network", "", "gcp: VPC network of the collector and the mirrored sources (default: this appliance's)")
	fs.StringVar(&c.Subnetwork, "gcp-subnetwork", "", "gcp: subnetwork of the collector forwarding rule (default: this appliance's)")
	fs.StringVar(&c.InstanceGroup, "gcp-instance-group", "", "gcp: existing collector instance group, NAME or zones/ZONE/instanceGroups/NAME (default: create one holding this appliance)")
	fs.StringVar(&c.ID, "gcp-id", "", "gcp: names resources metlo-appliance-ID-… (default: the instance name)")
	fs.StringVar(&c.Endpoint, "gcp-endpoint", "", "gcp: Compute API endpoint override (an http:// endpoint is used without credentials, for emulators)")
	fs.StringVar(&c.MetadataHost, "gcp-metadata-host", "", "gcp: metadata server host:port override (default: GCE_METADATA_HOST or 169.254.169.254)")
	fs.DurationVar(&c.PollInterval, "gcp-poll-interval", time.Second, "gcp: first wait between operation status polls")
	if scope == scopeCleanup {
		fs.BoolVar(&c.Fleet.Delete, "gcp-delete-fleet", false, "gcp: cleanup: delete the collector fleet (managed instance group and its members) with the rest")
	}
	if scope == scopeProvision {
		fs.StringVar(&c.TargetTag, "gcp-target-tag", "", "gcp: network tag the health-check firewall rule targets (default: this appliance's service account)")
		fs.StringSliceVar(&c.FilterCIDRs, "gcp-filter-cidr", nil, "gcp: mirror only these CIDR ranges (repeatable or comma-separated; default 0.0.0.0/0 and ::/0)")
		fs.IntVar(&c.Priority, "gcp-priority", gcp.DefaultPriority, "gcp: packet mirroring policy priority, 0-65535, lower wins")
		addGCPFleetFlags(fs, &c.Fleet)
	}
	return func(ctx context.Context) (provision.Provider, error) { return gcp.New(ctx, c) }
}

// addGCPFleetFlags registers the managed-instance-group fleet flags.
func addGCPFleetFlags(fs *pflag.FlagSet, f *gcp.FleetConfig) {
	fs.IntVar(&f.Size, "gcp-fleet-size", 0, "gcp: run a fleet of this many collectors in a regional managed instance group behind the collector load balancer (0 = this appliance alone)")
	fs.IntVar(&f.Min, "gcp-fleet-min", 0, "gcp: fewest collectors the autoscaler keeps (default: --gcp-fleet-size)")
	fs.IntVar(&f.Max, "gcp-fleet-max", 0, "gcp: most collectors the autoscaler runs (default: twice --gcp-fleet-size)")
	fs.StringVar(&f.Image, "gcp-fleet-image", "", "gcp: boot image of the collectors, e.g. projects/P/global/images/family/metlo-appliance")
	fs.StringVar(&f.MachineType, "gcp-fleet-machine-type", "", "gcp: machine type of the collectors (default e2-standard-4)")
	fs.StringVar(&f.ServiceAccount, "gcp-fleet-service-account", "", "gcp: service account of the collectors (default: this appliance's)")
	fs.StringArrayVar(&f.Settings, "gcp-fleet-setting", nil, "gcp: METLO_KEY=VALUE metadata of the collectors, e.g. METLO_HOST=… (repeatable, never comma-split: a value may hold commas; values are never printed)")
	fs.Float64Var(&f.CPUTarget, "gcp-fleet-cpu-target", 60, "gcp: average CPU % the autoscaler keeps")
}
