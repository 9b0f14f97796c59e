package aws

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/provision"
	"github.com/metlo-labs/metlo-appliance/provision/aws/awsemu"
)

const selfID = "i-0appliance0000001"

// fixture is one emulated AWS account with this appliance running in it.
type fixture struct {
	t    *testing.T
	emu  *awsemu.Emulator
	p    *Provider
	out  bytes.Buffer
	eni  string // the appliance's primary ENI
	opts provision.Options
}

func newFixture(t *testing.T, mod ...func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEMULATOR")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "emulator-secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	emu := awsemu.New("us-east-1")
	eni := emu.AddInstance(awsemu.Instance{ID: selfID, Type: "c5n.large", Tags: map[string]string{"Name": "metlo"}})
	srv := emu.Start()
	t.Cleanup(srv.Close)
	md := (&awsemu.IMDS{InstanceID: selfID, Region: "us-east-1", MAC: "0a:00:00:00:00:01", ENI: eni, VPCID: "vpc-0emu", SubnetID: "subnet-0emu"}).Start()
	t.Cleanup(md.Close)
	cfg := Config{Endpoint: srv.URL, IMDSEndpoint: md.URL, MaxAttempts: 6, RetryMaxBackoff: 2 * time.Millisecond, ConsistencyWait: 40 * time.Millisecond}
	for _, m := range mod {
		m(&cfg)
	}
	f := &fixture{t: t, emu: emu, p: New(cfg), eni: eni}
	f.opts = provision.Options{Out: &f.out, HealthPort: 9731, In: strings.NewReader("")}
	return f
}

// reconcile runs one provision pass with the given sources and returns its output.
func (f *fixture) reconcile(sources ...string) (string, error) {
	f.t.Helper()
	f.out.Reset()
	o := f.opts
	o.Sources = sources
	err := f.p.Reconcile(context.Background(), o)
	return f.out.String(), err
}

func (f *fixture) mustReconcile(sources ...string) string {
	f.t.Helper()
	out, err := f.reconcile(sources...)
	if err != nil {
		f.t.Fatalf("reconcile %v: %v\n%s", sources, err, out)
	}
	return out
}

// ourSessions returns the sessions tagged for the appliance, by source ENI.
func (f *fixture) ourSessions() map[string]awsemu.Session {
	m := map[string]awsemu.Session{}
	for _, s := range f.emu.Sessions() {
		if s.Tags[TagAppliance] == selfID {
			if _, dup := m[s.ENI]; dup {
				f.t.Fatalf("two sessions of ours on %s", s.ENI)
			}
			m[s.ENI] = s
		}
	}
	return m
}

// assertNoop re-runs and fails on any mutating call.
func (f *fixture) assertNoop(sources ...string) string {
	f.t.Helper()
	before := f.emu.Mutations()
	out := f.mustReconcile(sources...)
	if d := f.emu.Mutations() - before; d != 0 {
		f.t.Fatalf("re-run made %d mutating calls, want 0:\n%s", d, out)
	}
	if strings.Contains(out, "  + ") || strings.Contains(out, "  - ") || strings.Contains(out, "  ~ ") {
		f.t.Fatalf("re-run planned changes:\n%s", out)
	}
	return out
}
