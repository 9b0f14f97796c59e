package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/metlo-labs/metlo-appliance/exporter/metlotest"
)

var metricName = regexp.MustCompile(`\bmetlo_appliance_[a-z0-9_]+`)

// exportedNames registers everything the appliance exports (including a pipeline and a
// Metlo sink) and returns the metric names a scrape can contain, histogram series included.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	m := fixedMetrics()
	if err := m.RegisterCapture(fakeCapture{}); err != nil {
		t.Fatal(err)
	}
	b := metlotest.New(testKey)
	o := testOpts(b)
	o.SpoolDir = t.TempDir()
	x, err := New(context.Background(), Options{Encoders: 1, Sinks: []string{"metlo:" + testURL}, Metlo: o, Metrics: m, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	x.Submit(sampleExchange())
	x.Close(context.Background())
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

func checkNames(t *testing.T, where string, exprs []string, exported map[string]bool) {
	t.Helper()
	if len(exprs) == 0 {
		t.Fatalf("%s: no expressions found", where)
	}
	used := 0
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			used++
			if !exported[n] {
				known := make([]string, 0, len(exported))
				for k := range exported {
					known = append(known, k)
				}
				sort.Strings(known)
				t.Errorf("%s uses %s, which the appliance does not export (exports: %s)", where, n, strings.Join(known, ", "))
			}
		}
	}
	if used == 0 {
		t.Fatalf("%s: no appliance metric used", where)
	}
}

// dashboard is the part of the Grafana dashboard the tests read.
type dashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Type        string `json:"type"`
		Title       string `json:"title"`
		Description string `json:"description"`
		FieldConfig struct {
			Defaults struct {
				Unit   string `json:"unit"`
				Custom struct {
					AxisLabel *string `json:"axisLabel"`
				} `json:"custom"`
			} `json:"defaults"`
			Overrides []json.RawMessage `json:"overrides"`
		} `json:"fieldConfig"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile("dashboards/metlo-appliance.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	return d
}

// registeredElsewhere are appliance metrics registered outside the exporter, checked by
// their own packages' tests (the XDP program's per-CPU counters need a loaded program).
var registeredElsewhere = []string{"metlo_appliance_xdp_packets_total", // datapath/xdp
	"metlo_appliance_datapath_ip_datagrams_total", "metlo_appliance_datapath_ip_reassembly_bytes"} // datapath.DefragCollector

func TestDashboardUsesExportedMetrics(t *testing.T) {
	var exprs []string
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	names := exportedNames(t)
	for _, n := range registeredElsewhere {
		names[n] = true
	}
	checkNames(t, "dashboard", exprs, names)
}

// TestDashboardPanels: every panel explains itself and has one unit, every query follows
// the job and instance variables, and every loss point, the process and the version have
// a panel.
func TestDashboardPanels(t *testing.T) {
	d := loadDashboard(t)
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		q, _ := json.Marshal(v.Query)
		vars[v.Name] = string(q)
	}
	if !strings.Contains(vars["job"], "label_values(metlo_appliance_build_info, job)") {
		t.Errorf("no job variable over metlo_appliance_build_info: %v", vars)
	}
	if !strings.Contains(vars["instance"], `job=~\"$job\"`) {
		t.Errorf("the instance variable does not follow $job: %s", vars["instance"])
	}
	var all []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		if len(strings.TrimSpace(p.Description)) < 40 {
			t.Errorf("panel %q has no description", p.Title)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("panel %q has no unit", p.Title)
		}
		if p.Type == "timeseries" && (p.FieldConfig.Defaults.Custom.AxisLabel == nil || *p.FieldConfig.Defaults.Custom.AxisLabel == "") {
			t.Errorf("panel %q has no axis label", p.Title)
		}
		if len(p.FieldConfig.Overrides) > 0 {
			t.Errorf("panel %q overrides its fields: one unit per panel keeps every axis honest", p.Title)
		}
		for _, tg := range p.Targets {
			all = append(all, tg.Expr)
			for _, sel := range []string{`job=~"$job"`, `instance=~"$instance"`} {
				if strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, sel) {
					t.Errorf("panel %q: a selector lacks %s: %s", p.Title, sel, tg.Expr)
				}
			}
		}
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{
		"metlo_appliance_capture_dropped_total", `metlo_appliance_xdp_packets_total{job=~"$job",instance=~"$instance",reason="ringbuf_full"}`,
		`reason!~"duplicate|closed_flow"`, `outcome=~"dropped_.*|shed_.*"`, "metlo_appliance_capture_rejected_total",
		"metlo_appliance_capture_ring_freezes_total", "metlo_appliance_exporter_queue_limit_traces",
		"process_resident_memory_bytes", "process_cpu_seconds_total", "metlo_appliance_build_info", "up{",
		"metlo_appliance_reassembly_protocol_flows_total", "metlo_appliance_http2_frames_total", "metlo_appliance_http2_events_total",
		"metlo_appliance_datapath_ip_datagrams_total",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no panel queries %s", want)
		}
	}
}

// TestPromtoolDashboardQueries checks every panel query parses as PromQL, by loading them
// as recording rules with the Grafana variables filled in.
func TestPromtoolDashboardQueries(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	var rules []map[string]string
	r := strings.NewReplacer("$__rate_interval", "5m", "$job", ".*", "$instance", ".*")
	for i, p := range loadDashboard(t).Panels {
		for j, tg := range p.Targets {
			rules = append(rules, map[string]string{"record": fmt.Sprintf("panel_%d_%d", i, j), "expr": r.Replace(tg.Expr)})
		}
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(f, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

func TestAlertRulesUseExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("alerts/metlo-appliance.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	checkNames(t, "alert rules", exprs, exportedNames(t))
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	if out, err := exec.Command(promtool, "check", "rules", "alerts/metlo-appliance.rules.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
