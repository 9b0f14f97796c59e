// Package provision holds what the cloud provisioners share: the source syntax, the options
// every cloud understands and the Provider interface the CLI drives.
package provision

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Source is one thing to mirror, written KIND:VALUE (instance:i-0abc, tag:Env=prod, …).
type Source struct {
	Kind  string
	Value string
}

// String renders the source as it is written on the command line.
func (s Source) String() string { return s.Kind + ":" + s.Value }

// ParseSource parses KIND:VALUE; allowed lists the kinds the cloud accepts.
func ParseSource(s string, allowed ...string) (Source, error) {
	kind, value, ok := strings.Cut(s, ":")
	if !ok || kind == "" || value == "" {
		return Source{}, fmt.Errorf("source %q: want KIND:VALUE with KIND one of %s", s, strings.Join(allowed, ", "))
	}
	for _, a := range allowed {
		if kind == a {
			return Source{Kind: kind, Value: value}, nil
		}
	}
	return Source{}, fmt.Errorf("source %q: unknown kind %q, want one of %s", s, kind, strings.Join(allowed, ", "))
}

// Options are the settings every cloud shares; cloud-specific settings live in each
// provider's own configuration.
type Options struct {
	Sources     []string // raw KIND:VALUE strings; the provider parses them with its kinds
	DryRun      bool     // print the plan (and check permissions where the cloud can) without changing anything
	Yes         bool     // skip confirmations
	Interactive bool     // In/Out are a terminal: guided mode may prompt
	Region      string   // cloud region; empty = discover from instance metadata
	Target      string   // mirror target kind ("eni" or "nlb" on AWS, "ilb" on GCP); empty = the cloud's default
	HealthPort  int      // port serving the appliance's /readyz, used for load-balancer health checks
	In          io.Reader
	Out         io.Writer // human-readable progress, plans and tables

	Prices             Prices  // list prices for the cost estimate; nil = DefaultPrices
	MirroredGBPerMonth float64 // expected mirrored traffic, for the data-dependent part of the estimate
}

// Provider sets up, lists and tears down one cloud's mirroring to this appliance. Every
// method is safe to run again and again: resources are found before they are created.
type Provider interface {
	// Reconcile makes the cloud match the desired state: target/collector, filter, one
	// session or policy covering every source; sources that vanished are unmirrored.
	Reconcile(ctx context.Context, opts Options) error
	// List prints the mirroring this appliance owns as a table.
	List(ctx context.Context, opts Options) error
	// Remove stops mirroring one session or source.
	Remove(ctx context.Context, opts Options, what string) error
	// Cleanup deletes everything tagged for this appliance, in dependency order.
	Cleanup(ctx context.Context, opts Options) error
}
