package provision

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Doctor checks every link of the mirroring chain and says what is broken and how to fix it.
type Doctor interface {
	Doctor(ctx context.Context, opts Options, d DoctorOptions) (*Report, error)
}

// DoctorOptions tune the checks that look at the appliance itself.
type DoctorOptions struct {
	MetricsURL string        // the collector's /metrics; "" skips the arrival check
	Sample     time.Duration // how long to watch the packet counters; 0 = 5s
	HTTP       *http.Client  // nil = 3s timeout
}

// Finding is the result of one check.
type Finding struct {
	Status string // ok, warn, fail
	Check  string
	Detail string
	Fix    string
}

// Report is what doctor found, in the order it looked.
type Report struct {
	Cloud    string
	Findings []Finding
}

func (r *Report) add(status, check, detail, fix string) {
	r.Findings = append(r.Findings, Finding{Status: status, Check: check, Detail: detail, Fix: fix})
}

// OK records a link that works.
func (r *Report) OK(check, detail string) { r.add("ok", check, detail, "") }

// Warn records something that works but may lose traffic.
func (r *Report) Warn(check, detail, fix string) { r.add("warn", check, detail, fix) }

// Fail records a broken link.
func (r *Report) Fail(check, detail, fix string) { r.add("fail", check, detail, fix) }

// Failed counts the broken links.
func (r *Report) Failed() int {
	n := 0
	for _, f := range r.Findings {
		if f.Status == "fail" {
			n++
		}
	}
	return n
}

// Print writes the report, one line per check and the fix under each problem.
func (r *Report) Print(out io.Writer) {
	for _, f := range r.Findings {
		mark := map[string]string{"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[f.Status]
		fmt.Fprintf(out, "  %s %s: %s\n", mark, f.Check, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(out, "       fix: %s\n", f.Fix)
		}
	}
	if n := r.Failed(); n > 0 {
		fmt.Fprintf(out, "%s: %s broken\n", r.Cloud, plural(n, "link", "links"))
	} else {
		fmt.Fprintf(out, "%s: every link checked works\n", r.Cloud)
	}
}

// Err is non-nil when a link is broken, for the exit status.
func (r *Report) Err() error {
	if n := r.Failed(); n > 0 {
		return fmt.Errorf("doctor: %s broken (see FAIL lines)", plural(n, "link", "links"))
	}
	return nil
}

// PacketsByEncap reads metlo_appliance_datapath_packets_total from a /metrics page, summed
// per encapsulation (raw, vxlan, geneve, geneve_vxlan).
func PacketsByEncap(ctx context.Context, client *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	const name = "metlo_appliance_datapath_packets_total{"
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		encap := ""
		for _, kv := range strings.Split(labels, ",") {
			if v, ok := strings.CutPrefix(kv, `encap="`); ok {
				encap = strings.TrimSuffix(v, `"`)
			}
		}
		f, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err == nil {
			out[encap] += f
		}
	}
	return out, sc.Err()
}

// CheckArrival watches the appliance's packet counters for d.Sample and records whether
// mirrored packets of the wanted encapsulations arrive.
func (d DoctorOptions) CheckArrival(ctx context.Context, r *Report, encaps []string, fix string) {
	if d.MetricsURL == "" {
		return
	}
	client := d.HTTP
	if client == nil {
		client = &http.Client{Timeout: 3 * time.Second}
	}
	sample := d.Sample
	if sample <= 0 {
		sample = 5 * time.Second
	}
	check := "packets arriving at the collector"
	before, err := PacketsByEncap(ctx, client, d.MetricsURL)
	if err != nil {
		r.Warn(check, fmt.Sprintf("cannot read the collector's counters at %s: %v", d.MetricsURL, err),
			"start the collector (systemctl status metlo-appliance) or pass --metrics-url")
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(sample):
	}
	after, err := PacketsByEncap(ctx, client, d.MetricsURL)
	if err != nil {
		r.Warn(check, fmt.Sprintf("the collector's counters went away: %v", err), "check the collector's logs (journalctl -u metlo-appliance)")
		return
	}
	var parts []string
	total := 0.0
	for _, k := range sortedKeys(after) {
		if delta := after[k] - before[k]; delta > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f/s", k, delta/sample.Seconds()))
			if contains(encaps, k) {
				total += delta
			}
		}
	}
	switch {
	case total > 0:
		r.OK(check, strings.Join(parts, ", "))
	case len(parts) > 0:
		r.Fail(check, fmt.Sprintf("packets arrive (%s) but none of %s in %s", strings.Join(parts, ", "), strings.Join(encaps, "/"), sample), fix)
	default:
		r.Fail(check, fmt.Sprintf("no packet in %s", sample), fix)
	}
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
