package exporter

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// alertRule is one rule of the shipped alert file.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	raw, err := os.ReadFile("alerts/metlo-appliance.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) < 10 {
		t.Fatalf("only %d alert rules found", len(out))
	}
	return out
}

// ruleTestFiles are the promtool unit tests of the alert rules.
var ruleTestFiles = []string{"metlo-appliance.rules.test.yml", "metlo-appliance-fleet.rules.test.yml"}

// TestPromtoolAlertRules runs every alert's unit tests with promtool test rules.
func TestPromtoolAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	for _, f := range ruleTestFiles {
		cmd := exec.Command(promtool, "test", "rules", f)
		cmd.Dir = "alerts"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool test rules %s: %v\n%s", f, err, out)
		}
	}
}

// TestEveryAlertIsTested: each alert must be expected to fire in at least one promtool
// case, so a new alert cannot ship without a test.
func TestEveryAlertIsTested(t *testing.T) {
	fired := map[string]bool{}
	for _, f := range ruleTestFiles {
		raw, err := os.ReadFile("alerts/" + f)
		if err != nil {
			t.Fatal(err)
		}
		var tf struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(raw, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				}
			}
		}
	}
	for _, r := range loadAlertRules(t) {
		if !fired[r.Alert] {
			t.Errorf("alert %s has no promtool test case in which it fires (%s)", r.Alert, strings.Join(ruleTestFiles, ", "))
		}
	}
}

// TestAlertAnnotations: every alert says what happened, what it means and where its
// runbook is, and the runbook link lands on a heading of docs/monitoring.md.
func TestAlertAnnotations(t *testing.T) {
	doc, err := os.ReadFile("../docs/monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	heading := regexp.MustCompile(`(?m)^#+ (.+)$`)
	for _, m := range heading.FindAllStringSubmatch(string(doc), -1) {
		anchors[githubAnchor(m[1])] = true
	}
	const base = "https://github.com/metlo-labs/metlo-appliance/blob/main/docs/monitoring.md#"
	var names []string
	for _, r := range loadAlertRules(t) {
		if slices.Contains(names, r.Alert) {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		names = append(names, r.Alert)
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[k]) == "" {
				t.Errorf("alert %s has no %s", r.Alert, k)
			}
		}
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
		}
		url := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(url, base)
		if !ok {
			t.Errorf("alert %s: runbook_url %q does not point into docs/monitoring.md", r.Alert, url)
			continue
		}
		if anchor != strings.ToLower(r.Alert) || !anchors[anchor] {
			t.Errorf("alert %s: runbook_url anchor #%s, want #%s, a heading of docs/monitoring.md", r.Alert, anchor, strings.ToLower(r.Alert))
		}
	}
}

// githubAnchor is the fragment GitHub gives a Markdown heading.
func githubAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}
