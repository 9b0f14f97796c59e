package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
	"github.com/metlo-labs/metlo-appliance/test/lab/netlab"
)

// TestLivePrometheus has a real Prometheus server scrape a live collector in the lab and
// asks it, with PromQL, how many exchanges the appliance saw and at what rate; the scrape
// itself must pass `promtool check metrics`.
func TestLivePrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("live lab skipped in -short mode")
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (Debian package prometheus)")
	}
	lab := netlab.New(t, netlab.Options{Mode: netlab.VXLAN})
	c := startLiveCollector(t, lab, "--capture", "afpacket", "-i", lab.CollectorIf, "--summary-interval", "1s")
	metricsAddr := lab.CollectorIP.String() + ":9731"
	promAddr := lab.CollectorIP.String() + ":9090"

	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	// The shipped alert rules too, evaluated every second against the live appliance.
	rules, err := filepath.Abs("../../exporter/alerts/metlo-appliance.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, fmt.Appendf(nil, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [%q]\nscrape_configs:\n  - job_name: metlo-appliance\n    static_configs:\n      - targets: [%q]\n", rules, metricsAddr), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pcmd := lab.CollectorCommand(ctx, prom, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+promAddr)
	var plog strings.Builder
	pcmd.Stdout, pcmd.Stderr = &plog, &plog
	if err := pcmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = pcmd.Wait() }()

	// Let Prometheus scrape the idle collector first, so the traffic shows as a rise.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		if n, err := promQuery(lab, promAddr, `count_over_time(up{job="metlo-appliance"}[1m])`); err == nil && n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus never scraped the collector\n%s", tail(plog.String(), 10))
		}
	}
	tctx, tcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer tcancel()
	truthPath, err := lab.RunTraffic(tctx)
	if err != nil {
		t.Fatal(err)
	}
	truth, err := groundtruth.Load(truthPath)
	if err != nil {
		t.Fatal(err)
	}

	// The exchange count Prometheus scraped must reach what the server served.
	total := `sum(metlo_appliance_http_exchanges_total{outcome=~"complete|truncated|no_response"})`
	var got float64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		got, err = promQuery(lab, promAddr, total)
		if err == nil && int(got) == len(truth) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus says %v exchanges (err %v), server served %d\nprometheus log:\n%s", got, err, len(truth), tail(plog.String(), 10))
		}
	}
	// rate() needs two scrapes on each side of the traffic.
	var rate float64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		rate, err = promQuery(lab, promAddr, `sum(rate(metlo_appliance_http_exchanges_total{outcome="complete"}[1m]))`)
		if err == nil && rate > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exchange rate %v (err %v)", rate, err)
		}
	}
	t.Logf("prometheus: %v exchanges, %.2f exchanges/s over the last minute", got, rate)

	// The capture's own state and every loss point it counts, by reason.
	for q, want := range map[string]float64{
		`metlo_appliance_capture_up`: 1,
		`metlo_appliance_capture_info{method="afpacket",interface="` + lab.CollectorIf + `"}`: 1,
		`metlo_appliance_capture_dropped_total{reason="packet_ring_full"}`:                    0,
		`metlo_appliance_capture_ring_freezes_total`:                                          0,
		`count(metlo_appliance_datapath_backpressure_seconds_total)`:                          1,
	} {
		if v, err := promQuery(lab, promAddr, q); err != nil || v != want {
			t.Errorf("%s = %v (err %v), want %v", q, v, err, want)
		}
	}

	// Every shipped rule evaluates without error on real data, and none fires for a
	// healthy appliance.
	status, body, err := getInCollector(lab, promAddr, "/api/v1/rules")
	if err != nil || status != 200 {
		t.Fatalf("rules API: %d %v", status, err)
	}
	var rr struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError, State string
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &rr); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rr.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" || r.LastError != "" || r.State == "firing" {
				t.Errorf("rule %s: health %q, error %q, state %q", r.Name, r.Health, r.LastError, r.State)
			}
		}
	}
	if n < 15 {
		t.Errorf("prometheus loaded %d rules from %s", n, rules)
	}

	if promtool, err := exec.LookPath("promtool"); err == nil {
		_, body, err := getInCollector(lab, metricsAddr, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		check := exec.Command(promtool, "check", "metrics")
		check.Stdin = strings.NewReader(string(body))
		if out, err := check.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
	c.stop(t, len(truth))
	// The live pulse in the log (read once the collector exited): one line a second, and
	// one that saw the traffic.
	if !regexp.MustCompile(`msg=capture packets_per_s=[1-9][0-9]* exchanges_per_s=[0-9]+ exchanges=[1-9]`).MatchString(c.stderr.String()) {
		t.Errorf("no live summary line with traffic in the log:\n%s", tail(c.stderr.String(), 20))
	}
}

// promQuery runs an instant PromQL query and returns its single scalar result.
func promQuery(lab *netlab.Lab, addr, q string) (float64, error) {
	status, body, err := getInCollector(lab, addr, "/api/v1/query?query="+url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	if status != 200 {
		return 0, fmt.Errorf("query %s: status %d: %s", q, status, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, err
	}
	if len(r.Data.Result) != 1 {
		return 0, fmt.Errorf("query %s: %d series", q, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}
