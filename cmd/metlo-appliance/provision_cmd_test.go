package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/metlo-labs/metlo-appliance/provision/gcp/gcpemu"
)

func helpOf(t *testing.T, args ...string) string {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--help"))
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// Each subcommand shows only its own flags; provision --help lists the source kinds.
func TestProvisioningHelp(t *testing.T) {
	prov := helpOf(t, "provision")
	for _, want := range []string{"instance:i-0abc123", "tag:Env=prod", "ecs:CLUSTER/SERVICE", "alb:NAME is refused", "subnet:app-subnet", "tag:web",
		"--aws-filter-rule", "--gcp-priority", "--dry-run", "--price", "METLO_SOURCES"} {
		if !strings.Contains(prov, want) {
			t.Errorf("provision --help lacks %q", want)
		}
	}
	for _, cmd := range []string{"list", "remove", "cleanup", "doctor"} {
		h := helpOf(t, cmd)
		for _, flag := range []string{"--source", "--dry-run", "--aws-filter-rule", "--aws-vni", "--gcp-priority", "--gcp-filter-cidr", "--watch", "--price"} {
			if strings.Contains(h, flag+" ") {
				t.Errorf("%s --help shows %s, a provision-only flag", cmd, flag)
			}
		}
		for _, flag := range []string{"--cloud", "--aws-instance-id", "--gcp-project"} {
			if !strings.Contains(h, flag) {
				t.Errorf("%s --help lacks %s", cmd, flag)
			}
		}
	}
	if !strings.Contains(helpOf(t, "doctor"), "--metrics-url") {
		t.Error("doctor --help lacks --metrics-url")
	}
}

// gcpCLIWorld is the Compute and metadata emulators with one appliance and one workload.
func gcpCLIWorld(t *testing.T) (*gcpemu.Server, *gcpemu.Metadata) {
	emu := gcpemu.New()
	t.Cleanup(emu.Close)
	emu.AddNetwork("proj-1", "default")
	emu.AddSubnetwork("proj-1", "us-central1", "default-sub", "default", "10.0.0.0/20")
	emu.AddInstance(gcpemu.Instance{Project: "proj-1", Zone: "us-central1-a", Name: "metlo-1", Network: "default", Subnetwork: "default-sub", IP: "10.0.0.2", ServiceAccount: "metlo@proj-1.iam.gserviceaccount.com"})
	emu.AddInstance(gcpemu.Instance{Project: "proj-1", Zone: "us-central1-b", Name: "web-1", Network: "default", Subnetwork: "default-sub", IP: "10.0.0.3", Tags: []string{"web"}})
	md := gcpemu.NewMetadata(gcpemu.MetadataInstance{ProjectID: "proj-1", ProjectNumber: "42", Zone: "us-central1-a", Name: "metlo-1", Network: "default", IP: "10.0.0.2", ServiceAccount: "metlo@proj-1.iam.gserviceaccount.com"})
	t.Cleanup(md.Close)
	return emu, md
}

func runCLI(args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// provision, list, doctor and cleanup read METLO_* variables like collect; flags win.
func TestProvisioningReadsMetloEnv(t *testing.T) {
	emu, md := gcpCLIWorld(t)
	t.Setenv("METLO_CLOUD", "gcp")
	t.Setenv("METLO_GCP_ENDPOINT", emu.URL())
	t.Setenv("METLO_GCP_METADATA_HOST", md.Host())
	t.Setenv("METLO_GCP_POLL_INTERVAL", "1ms")
	t.Setenv("METLO_SOURCES", "instance:web-1, tag:web")
	t.Setenv("METLO_GCP_PRIORITY", "0")
	t.Setenv("METLO_YES", "true") // never read: confirmations are given on the command line
	out, err := runCLI("provision")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pm := emu.Get("projects/proj-1/regions/us-central1/packetMirrorings/metlo-appliance-metlo-1-pm").(*computepb.PacketMirroring)
	if pm.GetPriority() != 0 || len(pm.GetMirroredResources().GetInstances()) != 1 || len(pm.GetMirroredResources().GetTags()) != 1 {
		t.Fatalf("policy from the environment: %v", pm)
	}
	if out, err = runCLI("list"); err != nil || !strings.Contains(out, "web-1") {
		t.Fatalf("list from the environment: %v\n%s", err, out)
	}
	if out, err = runCLI("provision", "--source", "tag:web"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if pm := emu.Get("projects/proj-1/regions/us-central1/packetMirrorings/metlo-appliance-metlo-1-pm").(*computepb.PacketMirroring); len(pm.GetMirroredResources().GetInstances()) != 0 {
		t.Fatalf("--source did not win over METLO_SOURCES: %v", pm)
	}
	if out, err = runCLI("cleanup"); err == nil || !strings.Contains(err.Error(), "pass --yes") {
		t.Fatalf("cleanup took METLO_YES from the environment: %v\n%s", err, out)
	}
}

// doctor prints the report and exits non-zero on a broken link.
func TestDoctorCommand(t *testing.T) {
	emu, md := gcpCLIWorld(t)
	base := []string{"--cloud", "gcp", "--gcp-endpoint", emu.URL(), "--gcp-metadata-host", md.Host(), "--gcp-poll-interval", "1ms"}
	if out, err := runCLI(append([]string{"provision", "--source", "tag:web"}, base...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	n := 0
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n += 10
		fmt.Fprintf(w, "metlo_appliance_datapath_packets_total{encap=\"raw\",outcome=\"ok\"} %d\n", n)
	}))
	defer metrics.Close()
	args := append([]string{"doctor", "--metrics-url", metrics.URL, "--sample", "20ms"}, base...)
	if out, err := runCLI(args...); err != nil || !strings.Contains(out, "every link checked works") {
		t.Fatalf("healthy: %v\n%s", err, out)
	}
	emu.Delete("projects/proj-1/global/firewalls/metlo-appliance-metlo-1-fw-hc")
	out, err := runCLI(args...)
	if err == nil || !strings.Contains(out, "FAIL health-check firewall rule") || !strings.Contains(out, "fix: run provision") {
		t.Fatalf("broken: %v\n%s", err, out)
	}
}

// Repeatable flags whose values hold no commas also take comma-separated lists, like
// collect's; --aws-region is a hidden old name of --region, on the command line and in the
// environment; a bad --cloud is a usage error.
func TestProvisioningFlagConsistency(t *testing.T) {
	emu, md := gcpCLIWorld(t)
	base := []string{"--cloud", "gcp", "--gcp-endpoint", emu.URL(), "--gcp-metadata-host", md.Host(), "--gcp-poll-interval", "1ms"}
	if out, err := runCLI(append([]string{"provision", "--source", "instance:web-1,tag:web"}, base...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pm := emu.Get("projects/proj-1/regions/us-central1/packetMirrorings/metlo-appliance-metlo-1-pm").(*computepb.PacketMirroring)
	if len(pm.GetMirroredResources().GetInstances()) != 1 || len(pm.GetMirroredResources().GetTags()) != 1 {
		t.Fatalf("--source a,b did not give two sources: %v", pm)
	}

	root := newRootCmd()
	prov, _, _ := root.Find([]string{"provision"})
	if err := prov.ParseFlags([]string{"--aws-region", "eu-west-1"}); err != nil {
		t.Fatal(err)
	}
	if got := prov.Flags().Lookup("region").Value.String(); got != "eu-west-1" {
		t.Errorf("--aws-region set --region to %q", got)
	}
	root = newRootCmd()
	prov, _, _ = root.Find([]string{"provision"})
	t.Setenv("METLO_AWS_REGION", "ap-south-1")
	if err := applyEnv(prov.Flags()); err != nil {
		t.Fatal(err)
	}
	if got := prov.Flags().Lookup("region").Value.String(); got != "ap-south-1" {
		t.Errorf("METLO_AWS_REGION set --region to %q", got)
	}
	if h := helpOf(t, "provision"); strings.Contains(h, "--aws-region") || !strings.Contains(h, "--region") {
		t.Errorf("provision --help should show --region only")
	}
	_, err := runCLI("list", "--cloud", "azure")
	if exitCode(err) != exitUsage {
		t.Errorf("--cloud azure: exit %d (%v), want %d", exitCode(err), err, exitUsage)
	}
}
