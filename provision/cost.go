package provision

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// HoursPerMonth is the month the clouds' price pages use (365 × 24 / 12).
const HoursPerMonth = 730

// Price is one list price the cost estimate uses.
type Price struct {
	Key    string  // name for --price KEY=VALUE
	USD    float64 // per Unit
	Unit   string
	Source string // where the default comes from
}

// DefaultPrices are list prices in USD for us-east-1 / us-central1, as published on the
// providers' pricing pages when this release was made (docs/provision-aws.md and
// docs/provision-gcp.md name the pages). Nothing is fetched at run time: check the pages for
// your region and override with --price KEY=VALUE.
var DefaultPrices = []Price{
	{"aws-mirror-session-hour", 0.015, "ENI-hour with an active mirror session", "aws.amazon.com/vpc/pricing (Traffic Mirroring)"},
	{"aws-nlb-hour", 0.0225, "load-balancer-hour", "aws.amazon.com/elasticloadbalancing/pricing (Network Load Balancer)"},
	{"aws-nlcu-hour", 0.006, "NLCU-hour (UDP: 1 GB processed per hour)", "aws.amazon.com/elasticloadbalancing/pricing (Network Load Balancer)"},
	{"aws-cross-az-gb", 0.02, "GB mirrored across AZs (0.01 out + 0.01 in)", "aws.amazon.com/ec2/pricing/on-demand (Data Transfer within the same region)"},
	{"aws-instance-hour", 0.085, "appliance instance-hour (c6i.large)", "aws.amazon.com/ec2/pricing/on-demand"},
	{"gcp-mirroring-gb", 0.01, "GB processed by Packet Mirroring", "cloud.google.com/vpc/network-pricing (Packet Mirroring)"},
	{"gcp-forwarding-rule-hour", 0.025, "forwarding-rule-hour (first 5 rules)", "cloud.google.com/vpc/network-pricing (forwarding rules)"},
	{"gcp-ilb-gb", 0.008, "GB processed by the internal load balancer", "cloud.google.com/vpc/network-pricing (internal load balancing)"},
	{"gcp-instance-hour", 0.134, "appliance instance-hour (e2-standard-4)", "cloud.google.com/compute/vm-instance-pricing"},
}

// Prices are the prices in force: the defaults with the user's overrides.
type Prices map[string]float64

// ParsePrices applies KEY=VALUE overrides to the defaults; unknown keys are an error.
func ParsePrices(overrides []string) (Prices, error) {
	p := Prices{}
	for _, d := range DefaultPrices {
		p[d.Key] = d.USD
	}
	for _, o := range overrides {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			return nil, fmt.Errorf("--price %q: want KEY=USD", o)
		}
		if _, known := p[k]; !known {
			keys := make([]string, 0, len(p))
			for key := range p {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			return nil, fmt.Errorf("--price %q: unknown key %q (known: %s)", o, k, strings.Join(keys, ", "))
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return nil, fmt.Errorf("--price %q: want a non-negative number of USD", o)
		}
		p[k] = f
	}
	return p, nil
}

// Estimate is what a plan adds to the monthly bill.
type Estimate struct {
	Lines []CostLine
	Notes []string
}

// CostLine is one billed item: Quantity units at the price under Key.
type CostLine struct {
	What     string
	Quantity float64 // units per month
	Key      string
	USD      float64 // price per unit
}

// Monthly is the line's cost per month.
func (l CostLine) Monthly() float64 { return l.Quantity * l.USD }

// Add appends a line priced from prices[key]; a zero quantity is left out.
func (e *Estimate) Add(prices Prices, what string, quantity float64, key string) {
	if quantity <= 0 {
		return
	}
	e.Lines = append(e.Lines, CostLine{What: what, Quantity: quantity, Key: key, USD: prices[key]})
}

// Total is the sum of the lines.
func (e *Estimate) Total() float64 {
	t := 0.0
	for _, l := range e.Lines {
		t += l.Monthly()
	}
	return t
}

// Print writes the estimate as a small table.
func (e *Estimate) Print(out io.Writer) {
	fmt.Fprintln(out, "  estimated cost this plan adds per month (list prices, USD; --price KEY=USD overrides):")
	if len(e.Lines) == 0 {
		fmt.Fprintln(out, "    nothing billed is added")
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, l := range e.Lines {
		fmt.Fprintf(tw, "    %s\t%s × %s\t[%s]\t$%.2f\n", l.What, trimFloat(l.Quantity), trimFloat(l.USD), l.Key, l.Monthly())
	}
	if len(e.Lines) > 0 {
		fmt.Fprintf(tw, "    total\t\t\t$%.2f\n", e.Total())
	}
	_ = tw.Flush()
	for _, n := range e.Notes {
		fmt.Fprintf(out, "    note: %s\n", n)
	}
}

func trimFloat(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}
