package exporter

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
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

func TestDashboardUsesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("dashboards/metlo-appliance.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	checkNames(t, "dashboard", exprs, exportedNames(t))
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
