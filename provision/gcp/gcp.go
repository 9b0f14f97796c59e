// Package gcp provisions GCP Packet Mirroring to this appliance: a collector internal load
// balancer (instance group, health check, backend service, forwarding rule with
// isMirroringCollector, firewall rules) and one packet mirroring policy whose sources come
// from the command line. Every resource is found by name and description marker before it
// is created, so every command is safe to run again.
package gcp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/metadata"
	"google.golang.org/api/option"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// Config holds the GCP-only settings; empty fields are discovered from the metadata server.
type Config struct {
	Project       string        // project holding the appliance and the policy
	Zone          string        // the appliance's zone
	Instance      string        // the appliance's instance name
	Network       string        // VPC network (name or URL) of the appliance and the mirrored sources
	Subnetwork    string        // subnetwork (name or URL) of the collector forwarding rule
	InstanceGroup string        // existing collector instance group ("NAME" or "zones/Z/instanceGroups/NAME"); empty = create one holding this appliance
	ID            string        // names resources metlo-appliance-<ID>-…; empty = derived from the instance name
	TargetTag     string        // network tag the firewall rules target; empty = the appliance's service account
	FilterCIDRs   []string      // mirror only these ranges; empty = all of IPv4 and IPv6
	Priority      int           // packet mirroring policy priority, 0–65535, lower wins (0 is a valid, highest priority; the CLI defaults to DefaultPriority)
	Endpoint      string        // Compute API endpoint override; an http:// endpoint is used without credentials (emulators)
	MetadataHost  string        // metadata server host:port override (else GCE_METADATA_HOST, else 169.254.169.254)
	PollInterval  time.Duration // first wait between operation polls; grows to 10s
	// MetadataTimeout bounds the whole metadata-server discovery; 0 = 5s.
	MetadataTimeout time.Duration
	Fleet           FleetConfig // managed instance group of collectors (Fleet.Size > 0 turns it on)
}

// DefaultPriority is the packet mirroring priority the CLI uses unless told otherwise.
const DefaultPriority = 1000

// SourceHelp lists the source kinds with examples, for --help and error messages.
const SourceHelp = `  instance:web-1           one VM (instance:ZONE/NAME when the name exists in several zones)
  subnet:app-subnet        every VM of a subnetwork, now and later (at most 5 per policy)
  tag:web                  every VM with the network tag, now and later`

// Provider implements provision.Provider for GCP.
type Provider struct {
	cfg  Config
	api  *clients
	meta *metadata.Client
}

var _ provision.Provider = (*Provider)(nil)

// clients are the Compute REST clients the provisioner uses.
type clients struct {
	instances *compute.InstancesClient
	subnets   *compute.SubnetworksClient
	groups    *compute.InstanceGroupsClient
	hcs       *compute.RegionHealthChecksClient
	bss       *compute.RegionBackendServicesClient
	frs       *compute.ForwardingRulesClient
	fws       *compute.FirewallsClient
	pms       *compute.PacketMirroringsClient

	templates   *compute.InstanceTemplatesClient
	migs        *compute.RegionInstanceGroupManagersClient
	autoscalers *compute.RegionAutoscalersClient
}

// New builds a provider; it does not call any API yet.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MetadataTimeout <= 0 {
		cfg.MetadataTimeout = 5 * time.Second
	}
	if cfg.Priority < 0 || cfg.Priority > 65535 {
		return nil, fmt.Errorf("gcp priority %d: want 0-65535", cfg.Priority)
	}
	var opts []option.ClientOption
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
		if strings.HasPrefix(cfg.Endpoint, "http://") {
			opts = append(opts, option.WithoutAuthentication())
		}
	}
	var err error
	c := &clients{}
	mk := func(name string, f func() error) {
		if err == nil {
			if e := f(); e != nil {
				err = fmt.Errorf("create compute %s client: %w", name, e)
			}
		}
	}
	mk("instances", func() (e error) { c.instances, e = compute.NewInstancesRESTClient(ctx, opts...); return })
	mk("subnetworks", func() (e error) { c.subnets, e = compute.NewSubnetworksRESTClient(ctx, opts...); return })
	mk("instance groups", func() (e error) { c.groups, e = compute.NewInstanceGroupsRESTClient(ctx, opts...); return })
	mk("health checks", func() (e error) { c.hcs, e = compute.NewRegionHealthChecksRESTClient(ctx, opts...); return })
	mk("backend services", func() (e error) { c.bss, e = compute.NewRegionBackendServicesRESTClient(ctx, opts...); return })
	mk("forwarding rules", func() (e error) { c.frs, e = compute.NewForwardingRulesRESTClient(ctx, opts...); return })
	mk("firewalls", func() (e error) { c.fws, e = compute.NewFirewallsRESTClient(ctx, opts...); return })
	mk("packet mirrorings", func() (e error) { c.pms, e = compute.NewPacketMirroringsRESTClient(ctx, opts...); return })
	mk("instance templates", func() (e error) { c.templates, e = compute.NewInstanceTemplatesRESTClient(ctx, opts...); return })
	mk("instance group managers", func() (e error) { c.migs, e = compute.NewRegionInstanceGroupManagersRESTClient(ctx, opts...); return })
	mk("autoscalers", func() (e error) { c.autoscalers, e = compute.NewRegionAutoscalersRESTClient(ctx, opts...); return })
	if err != nil {
		return nil, err
	}
	return &Provider{cfg: cfg, api: c, meta: newMetadataClient(cfg.MetadataHost)}, nil
}

// Close releases the API clients.
func (p *Provider) Close() error {
	for _, c := range []interface{ Close() error }{p.api.instances, p.api.subnets, p.api.groups, p.api.hcs, p.api.bss, p.api.frs, p.api.fws, p.api.pms,
		p.api.templates, p.api.migs, p.api.autoscalers} {
		_ = c.Close()
	}
	return nil
}

// newMetadataClient returns a metadata client; a host override redirects its requests (the
// library otherwise only honours GCE_METADATA_HOST, which is process-global).
func newMetadataClient(host string) *metadata.Client {
	hc := &http.Client{Timeout: 2 * time.Second}
	if host != "" {
		hc.Transport = redirectTransport{host: host}
	}
	return metadata.NewWithOptions(&metadata.Options{Client: hc})
}

type redirectTransport struct{ host string }

func (t redirectTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	u := *r.URL
	u.Host = t.host
	if u.Scheme == "" {
		u.Scheme = "http"
	}
	r.URL, r.Host = &u, t.host
	return http.DefaultTransport.RoundTrip(r)
}
