// Package h2lab is the HTTP/2 lab: real HTTP/2 and gRPC servers and clients (h2server and
// h2client here, nghttpd and h2load from nghttp2, curl and nghttp for Upgrade: h2c) in the
// network-namespace lab of test/lab/netlab, mirrored by the kernel over VXLAN, with the
// servers' own logs as ground truth. See README.md.
package h2lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/pcapsrc"
	"github.com/metlo-labs/metlo-appliance/reassembly"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

var (
	nghttpdRecv   = regexp.MustCompile(`^\[id=(\d+)\] \[[ \d.]+\] recv \(stream_id=(\d+)\) (:method|:path): (.*)$`)
	nghttpdSend   = regexp.MustCompile(`^\[id=(\d+)\] \[[ \d.]+\] send HEADERS frame <.*stream_id=(\d+)>`)
	nghttpdStatus = regexp.MustCompile(`^\s+:status: (\d+)$`)
)

// ParseNghttpdLog reads the verbose log of nghttpd (-v) as ground truth: each stream's
// method and path as received, the status it sent, and for 200 responses the file under
// docroot it served. nghttpd does not log peer addresses, so the exchanges carry no client
// (groundtruth.Compare then matches them on any connection). Seq follows the order the
// log shows the responses in.
func ParseNghttpdLog(r io.Reader, docroot string) ([]groundtruth.Exchange, error) {
	type key struct{ conn, stream string }
	open := map[key]*groundtruth.Exchange{}
	var out []groundtruth.Exchange
	var pending *key // the stream whose HEADERS frame is being printed
	files := map[string][]byte{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := nghttpdRecv.FindStringSubmatch(line); m != nil {
			k := key{m[1], m[2]}
			e := open[k]
			if e == nil {
				e = &groundtruth.Exchange{}
				open[k] = e
			}
			if m[3] == ":method" {
				e.Method = m[4]
			} else {
				e.Target = m[4]
				e.Path, e.Query, _ = strings.Cut(m[4], "?")
			}
			continue
		}
		if m := nghttpdSend.FindStringSubmatch(line); m != nil {
			pending = &key{m[1], m[2]}
			continue
		}
		if m := nghttpdStatus.FindStringSubmatch(line); m != nil && pending != nil {
			e := open[*pending]
			delete(open, *pending)
			pending = nil
			if e == nil {
				continue // a response whose request lines we did not see
			}
			e.Status, _ = strconv.Atoi(m[1])
			e.SetReqBody(nil)
			e.SetRespBody(nil)
			if e.Status == 200 {
				b, ok := files[e.Path]
				if !ok {
					var err error
					if b, err = os.ReadFile(filepath.Join(docroot, filepath.FromSlash(e.Path))); err != nil {
						return nil, fmt.Errorf("served file: %w", err)
					}
					files[e.Path] = b
				}
				e.SetRespBody(b)
			}
			e.Seq = len(out) + 1
			e.Case = "nghttpd"
			out = append(out, *e)
			continue
		}
		if !strings.HasPrefix(line, " ") {
			pending = nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read nghttpd log: %w", err)
	}
	return out, nil
}

// Observe runs a capture through the stages collect uses (pcap source, decoder, sharded
// workers) and returns the exchanges by server port, with the reassembly counters.
func Observe(path string) (map[uint16][]groundtruth.Observed, reassembly.Stats, error) {
	var mu sync.Mutex
	byPort := map[uint16][]groundtruth.Observed{}
	d := datapath.NewDispatcher(datapath.DispatcherConfig{Workers: 2}, exchange.HandlerFunc(func(e *exchange.Exchange) {
		mu.Lock()
		byPort[e.Server.Port()] = append(byPort[e.Server.Port()], groundtruth.FromExchange(e))
		mu.Unlock()
	}))
	err := pcapsrc.New(pcapsrc.Config{Path: path}).Run(context.Background(), d.NewHandler)
	d.Close()
	return byPort, d.Snapshot().Reassembly, err
}

// Accuracy is the share of truth exchanges observed without any problem, given Compare's
// problem lines (each names its exchange by its "seq N" prefix; unexpected ones do not count).
func Accuracy(truth []groundtruth.Exchange, problems []string) float64 {
	if len(truth) == 0 {
		return 0
	}
	bad := map[string]bool{}
	for _, p := range problems {
		if seq, _, ok := strings.Cut(p, " ("); ok && strings.HasPrefix(seq, "seq ") {
			bad[seq] = true
		}
	}
	return float64(len(truth)-len(bad)) / float64(len(truth))
}
