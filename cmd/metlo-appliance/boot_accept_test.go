package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	provaws "github.com/metlo-labs/metlo-appliance/provision/aws"
	"github.com/metlo-labs/metlo-appliance/provision/aws/awsemu"
)

// TestAWSTunnelDefaults derives the accept lists from what boot will provision, against
// the IMDS emulator (IMDSv2 tokens and all): the VNI every session gets (--aws-vni, else
// the one derived from the instance id) and the VPC's CIDR blocks; nothing without sources
// to provision, and nothing over what the operator set.
func TestAWSTunnelDefaults(t *testing.T) {
	up := (&awsemu.IMDS{InstanceID: "i-0abc", Region: "eu-west-1", MAC: "0a:00:00:00:00:07"}).Start()
	defer up.Close()
	md := httptest.NewServer(&bootIMDS{upstream: up.URL, vpcCIDRs: "10.20.0.0/16\n100.64.0.0/20"})
	defer md.Close()
	o := &bootOptions{imdsEndpoint: md.URL, detectTimeout: 2 * time.Second}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name      string
		provision map[string][]string
		config    map[string]any
		vnis, src string
	}{
		{"provisioning, derived vni", map[string][]string{"source": {"tag:Env=prod"}}, nil,
			fmt.Sprint([]int{provaws.DefaultVNI("i-0abc")}), "[10.20.0.0/16 100.64.0.0/20]"},
		{"provisioning, --aws-vni", map[string][]string{"source": {"tag:Env=prod"}, "aws-vni": {"4242"}}, nil, "[4242]", "[10.20.0.0/16 100.64.0.0/20]"},
		{"operator's lists win", map[string][]string{"source": {"tag:Env=prod"}},
			map[string]any{"accept-vnis": []int{7}, "accept-sources": []string{}}, "[7]", "[]"},
		{"mirroring set up by hand: nothing assumed", map[string][]string{}, nil, "<nil>", "<nil>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &bootSettings{Cloud: "aws", Provision: c.provision, config: map[string]any{}}
			for k, v := range c.config {
				st.config[k] = v
			}
			o.awsTunnelDefaults(context.Background(), st, log)
			if got := fmt.Sprint(st.config["accept-vnis"]); got != c.vnis {
				t.Errorf("accept-vnis = %s, want %s", got, c.vnis)
			}
			if got := fmt.Sprint(st.config["accept-sources"]); got != c.src {
				t.Errorf("accept-sources = %s, want %s", got, c.src)
			}
		})
	}
}
