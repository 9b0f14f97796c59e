package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

// TestGoldenCollectCLIHTTP2 runs the real collect command on the HTTP/2 lab capture
// (test/h2lab: h2c with prior knowledge, Upgrade: h2c, gRPC, nghttpd under h2load): one
// trace per stream the servers logged, saying its protocol, gRPC calls with their service,
// method and status, and a summary that counts the flows by protocol.
func TestGoldenCollectCLIHTTP2(t *testing.T) {
	truth, err := groundtruth.Load(filepath.Join(labData, "h2c_groundtruth.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, conf := filepath.Join(dir, "traces.jsonl"), filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	root.SetArgs([]string{"collect", "--pcap", filepath.Join(labData, "h2c.pcap"), "--sink", "jsonl:" + out,
		"--config", conf, "--credentials-file", ""})
	var stderr strings.Builder
	root.SetErr(&stderr)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("collect: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "http1=13 http2=28 other=0") || !strings.Contains(stderr.String(), "h2c_upgrade=13") {
		t.Errorf("summary:\n%s", stderr.String())
	}
	traces := readTraces(t, out)
	var got []trace
	proto := map[string]int{}
	grpc := 0
	for _, tr := range traces {
		if tr.Meta["destinationPort"] == float64(8090) {
			continue // nghttpd: its log is checked in test/h2lab
		}
		got = append(got, tr)
		p, _ := tr.Meta["protocol"].(string)
		proto[p]++
		if tr.Meta["grpcService"] == "lab.Orders" {
			grpc++
			if _, ok := tr.Meta["grpcStatus"].(float64); !ok || tr.Meta["grpcMethod"] == "" {
				t.Errorf("gRPC trace without method or status: %v", tr.Meta)
			}
		}
	}
	want, keys := truthKeys(truth), traceKeys(got)
	if strings.Join(want, "\n") != strings.Join(keys, "\n") {
		t.Fatalf("traces differ from ground truth:\nwant %d %v\ngot  %d %v", len(want), want, len(keys), keys)
	}
	// The upgrade requests went out as HTTP/1.1 (their responses came as HTTP/2).
	if proto["HTTP/1.1"] != 13 || proto["HTTP/2.0"] != len(got)-13 || grpc == 0 {
		t.Fatalf("protocols %v, %d gRPC traces", proto, grpc)
	}
}
