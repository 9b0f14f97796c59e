package main

import (
	"context"
	"time"

	"github.com/spf13/pflag"

	"github.com/metlo-labs/metlo-appliance/provision"
	"github.com/metlo-labs/metlo-appliance/provision/gcp"
)

func init() { clouds["gcp"] = gcpFlags }

// gcpFlags registers the --gcp-… flags on a provisioning command and returns the
// constructor of the GCP provider built from them.
func gcpFlags(fs *pflag.FlagSet) func(ctx context.Context) (provision.Provider, error) {
	var c gcp.Config
	fs.StringVar(&c.Project, "gcp-project", "", "GCP project (default: discovered from the metadata server)")
	fs.StringVar(&c.Zone, "gcp-zone", "", "zone of this appliance (default: discovered)")
	fs.StringVar(&c.Instance, "gcp-instance", "", "instance name of this appliance (default: discovered)")
	fs.StringVar(&c.Network, "gcp-network", "", "VPC network of the collector and the mirrored sources (default: this appliance's)")
	fs.StringVar(&c.Subnetwork, "gcp-subnetwork", "", "subnetwork of the collector forwarding rule (default: this appliance's)")
	fs.StringVar(&c.InstanceGroup, "gcp-instance-group", "", "existing collector instance group, NAME or zones/ZONE/instanceGroups/NAME (default: create one holding this appliance)")
	fs.StringVar(&c.ID, "gcp-id", "", "names resources metlo-appliance-ID-… (default: the instance name)")
	fs.StringVar(&c.TargetTag, "gcp-target-tag", "", "network tag the firewall rules target (default: this appliance's service account)")
	fs.StringSliceVar(&c.FilterCIDRs, "gcp-filter-cidr", nil, "mirror only these CIDR ranges (repeatable; default 0.0.0.0/0 and ::/0)")
	fs.IntVar(&c.Priority, "gcp-priority", 1000, "packet mirroring policy priority, 0-65535, lower wins")
	fs.StringVar(&c.Endpoint, "gcp-endpoint", "", "Compute API endpoint override (an http:// endpoint is used without credentials, for emulators)")
	fs.StringVar(&c.MetadataHost, "gcp-metadata-host", "", "metadata server host:port override (default: GCE_METADATA_HOST or 169.254.169.254)")
	fs.DurationVar(&c.PollInterval, "gcp-poll-interval", time.Second, "first wait between operation status polls")
	return func(ctx context.Context) (provision.Provider, error) { return gcp.New(ctx, c) }
}
