package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/pcapsrc"
	"github.com/metlo-labs/metlo-appliance/reassembly"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

const labData = "../../testdata/lab"

// goldenCaptures are real lab captures (test/lab) with the server's own log of what it
// served; every variant must yield every exchange exactly.
var goldenCaptures = []struct{ capture, truth string }{
	{"vxlan.pcap", "groundtruth.jsonl"},
	{"vxlan.pcapng", "groundtruth.jsonl"},
	{"geneve.pcap", "groundtruth.jsonl"},
	{"geneve_ip.pcap", "groundtruth.jsonl"},
	{"vxlan_in_geneve.pcap", "groundtruth.jsonl"},
	{"vxlan_ipv6.pcap", "groundtruth.jsonl"},
	{"vlan.pcap", "groundtruth.jsonl"},
	{"reordered.pcap", "groundtruth.jsonl"},
	{"dual_eni.pcap", "groundtruth.jsonl"},
	{"raw.pcap", "raw_groundtruth.jsonl"},
}

// TestGoldenCaptures runs each capture through the same stages collect uses (pcap source,
// decoder, sharded workers) and compares every exchange with the ground truth.
func TestGoldenCaptures(t *testing.T) {
	for _, g := range goldenCaptures {
		t.Run(g.capture, func(t *testing.T) {
			truth, err := groundtruth.Load(filepath.Join(labData, g.truth))
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var observed []groundtruth.Observed
			d := datapath.NewDispatcher(datapath.DispatcherConfig{Workers: 2, Decoder: datapath.DecoderConfig{Raw: true}},
				exchange.HandlerFunc(func(e *exchange.Exchange) {
					mu.Lock()
					observed = append(observed, groundtruth.FromExchange(e))
					mu.Unlock()
				}))
			src := pcapsrc.New(pcapsrc.Config{Path: filepath.Join(labData, g.capture)})
			if err := src.Run(context.Background(), d.NewHandler); err != nil {
				t.Fatal(err)
			}
			d.Close()
			for _, p := range groundtruth.Compare(truth, observed, groundtruth.Options{BodyCap: reassembly.DefaultConfig().BodyCap}) {
				t.Error(p)
			}
			s := d.Snapshot().Reassembly
			if s.Exchanges["parse_error"] != 0 || s.Exchanges["orphan_response"] != 0 {
				t.Errorf("parse errors %d, orphan responses %d", s.Exchanges["parse_error"], s.Exchanges["orphan_response"])
			}
			t.Logf("%d exchanges match; %d gaps, %d out of order, %d duplicates", len(observed), s.Gaps, s.OutOfOrderSegments, s.Drops["duplicate"])
		})
	}
}

// trace is the part of a Metlo trace the golden CLI test reads back.
type trace struct {
	Request struct {
		URL struct {
			Host       string `json:"host"`
			Path       string `json:"path"`
			Parameters []struct {
				Name, Value string
			} `json:"parameters"`
		} `json:"url"`
		Method string `json:"method"`
		Body   string `json:"body"`
	} `json:"request"`
	Response struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	} `json:"response"`
	Meta map[string]any `json:"meta"`
}

// TestGoldenCollectCLI runs the real collect command on a capture and checks the JSONL it
// writes: one Metlo trace per ground-truth exchange, with the decoded query parameters.
func TestGoldenCollectCLI(t *testing.T) {
	for _, g := range []struct{ capture, truth string }{goldenCaptures[0], goldenCaptures[len(goldenCaptures)-1]} {
		t.Run(g.capture, func(t *testing.T) {
			truth, err := groundtruth.Load(filepath.Join(labData, g.truth))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			out, conf := filepath.Join(dir, "traces.jsonl"), filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(conf, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			root := newRootCmd()
			root.SetArgs([]string{"collect", "--pcap", filepath.Join(labData, g.capture), "--sink", "jsonl:" + out,
				"--config", conf, "--credentials-file", ""})
			var stderr strings.Builder
			root.SetErr(&stderr)
			if err := root.ExecuteContext(context.Background()); err != nil {
				t.Fatalf("collect: %v\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "exchanges") {
				t.Errorf("no summary on stderr:\n%s", stderr.String())
			}
			traces := readTraces(t, out)
			want, got := truthKeys(truth), traceKeys(traces)
			if strings.Join(want, "\n") != strings.Join(got, "\n") {
				t.Fatalf("traces differ from ground truth:\nwant %d %v\ngot  %d %v", len(want), want, len(got), got)
			}
			for _, tr := range traces {
				if tr.Meta["metloSource"] != "metlo-appliance" || tr.Meta["incoming"] != true {
					t.Fatalf("meta = %v", tr.Meta)
				}
			}
		})
	}
}

func readTraces(t *testing.T, path string) []trace {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []trace
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var tr trace
		if err := dec.Decode(&tr); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("trace %d: %v", len(out)+1, err)
		}
		out = append(out, tr)
	}
	return out
}

// truthKeys and traceKeys reduce both sides to sorted "METHOD path ?params status" lines.
func truthKeys(truth []groundtruth.Exchange) []string {
	var keys []string
	for _, e := range truth {
		q, _ := url.ParseQuery(e.Query)
		keys = append(keys, key(e.Method, e.Path, q, e.Status))
	}
	sort.Strings(keys)
	return keys
}

func traceKeys(traces []trace) []string {
	var keys []string
	for _, tr := range traces {
		q := url.Values{}
		for _, p := range tr.Request.URL.Parameters {
			q.Add(p.Name, p.Value)
		}
		keys = append(keys, key(tr.Request.Method, tr.Request.URL.Path, q, tr.Response.Status))
	}
	sort.Strings(keys)
	return keys
}

func key(method, path string, q url.Values, status int) string {
	return method + " " + path + " ?" + q.Encode() + " " + strconv.Itoa(status)
}
