package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
	"github.com/metlo-labs/metlo-appliance/test/lab/netlab"
)

// TestLiveAsymmetricCapture mirrors only the requests of the lab's traffic (the server's
// ingress), as a one-direction mirror filter or a load balancer splitting a connection's
// halves would, and checks that /metrics reports it: every connection that ended was
// one-sided, and the requests came out as exchanges without a response.
func TestLiveAsymmetricCapture(t *testing.T) {
	if testing.Short() {
		t.Skip("live lab skipped in -short mode")
	}
	lab := netlab.New(t, netlab.Options{Mode: netlab.VXLAN, OneWay: true})
	c := startLiveCollector(t, lab, "--capture", "afpacket", "-i", lab.CollectorIf, "--idle-timeout", "2s", "--response-timeout", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	truthPath, err := lab.RunTraffic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	truth, err := groundtruth.Load(truthPath)
	if err != nil {
		t.Fatal(err)
	}
	metrics := lab.CollectorIP.String() + ":9731"
	value := func(body []byte, name string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`).FindSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	var oneSided, ended float64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		_, body, err := getInCollector(lab, metrics, "/metrics")
		if err == nil {
			oneSided, ended = value(body, "metlo_appliance_capture_one_sided_flows_total"), value(body, "metlo_appliance_capture_flows_ended_total")
			if oneSided > 0 && oneSided == ended {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("one-sided %v of %v ended connections (err %v), want all of them and more than none", oneSided, ended, err)
		}
	}
	traces := c.stop(t, len(truth))
	t.Logf("%d exchanges served, %d traces, %v one-sided connections of %v ended", len(truth), len(traces), oneSided, ended)
	if len(traces) == 0 {
		t.Fatal("no traces: the requests alone should still be exported (without response)")
	}
	for _, tr := range traces {
		if tr.Response.Status != 0 {
			t.Fatalf("trace with a response status %d from a capture that never saw a response: %s", tr.Response.Status, fmt.Sprint(tr.Request.URL.Path))
		}
	}
}
