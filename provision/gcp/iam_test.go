package gcp

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/provision"
)

// TestIAMCoversEveryCall drives every command through the emulator, then checks that each
// API method called is listed in MethodPermissions, that each of those permissions comes
// from a documented role, and that the doc names every role.
func TestIAMCoversEveryCall(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	opts := provision.Options{Out: &strings.Builder{}}
	steps := []func() error{
		func() error {
			o := opts
			o.Sources = []string{"instance:web-1", "subnet:app-sub", "tag:web"}
			return w.p.Reconcile(ctx, o)
		},
		func() error {
			o := opts
			o.Sources = []string{"instance:web-2", "subnet:app-sub", "tag:web"}
			return w.p.Reconcile(ctx, o)
		}, // patches the policy
		func() error {
			o := opts
			o.Sources, o.HealthPort = []string{"instance:web-2", "subnet:app-sub", "tag:web"}, 9800
			return w.p.Reconcile(ctx, o) // patches the health check and its firewall rule
		},
		func() error {
			_, err := w.p.Doctor(ctx, opts, provision.DoctorOptions{})
			return err
		},
		func() error {
			w.p.cfg.Fleet = FleetConfig{Size: 1, Image: "metlo-appliance"}
			o := opts
			o.Sources = []string{"instance:web-2", "subnet:app-sub", "tag:web"}
			if err := w.p.Reconcile(ctx, o); err != nil {
				return err
			}
			w.p.cfg.Fleet.MachineType, w.p.cfg.Fleet.Max = "n2-standard-2", 3
			return w.p.Reconcile(ctx, o) // new template, patched group and autoscaler
		},
		func() error { return w.p.List(ctx, opts) },
		func() error { return w.p.Remove(ctx, opts, "instance:web-2") },
		func() error { return w.p.Remove(ctx, opts, "tag:web") },
		func() error { o := opts; o.Yes = true; w.p.cfg.Fleet.Delete = true; return w.p.Cleanup(ctx, o) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	granted := map[string]string{}
	for _, r := range Roles {
		for _, perm := range r.Permissions {
			granted[perm] = r.Name
		}
	}
	called := map[string]bool{}
	for _, c := range w.emu.Calls() {
		called[c] = true
	}
	var methods []string
	for m := range called {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		perms, ok := MethodPermissions[m]
		if !ok {
			t.Errorf("API method %s is called but not in MethodPermissions", m)
		}
		for _, perm := range perms {
			if granted[perm] == "" {
				t.Errorf("permission %s (for %s) is granted by none of the documented roles", perm, m)
			}
		}
	}
	t.Logf("methods called: %s", strings.Join(methods, " "))
	doc, err := os.ReadFile("../../docs/provision-gcp.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Roles {
		if !strings.Contains(string(doc), r.Name) {
			t.Errorf("docs/provision-gcp.md does not name %s", r.Name)
		}
	}
}
