package exporter

import (
	"os/exec"
	"testing"
)

// TestPromtoolFleetAlerts runs the fleet alerts' unit tests: split connections and a one-way
// mirror are told apart, and a healthy fleet alerts nothing.
func TestPromtoolFleetAlerts(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	cmd := exec.Command(promtool, "test", "rules", "metlo-appliance-fleet.rules.test.yml")
	cmd.Dir = "alerts"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
