package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/afpacket"
	"github.com/metlo-labs/metlo-appliance/datapath/pcapsrc"
	"github.com/metlo-labs/metlo-appliance/datapath/udpsrc"
	"github.com/metlo-labs/metlo-appliance/datapath/xdp"
	"github.com/metlo-labs/metlo-appliance/exporter"
)

// deliveryOutcome turns the sinks' summaries into the offline run's exit status.
func deliveryOutcome(sums []exporter.SinkSummary) error {
	var lost uint64
	var pending int64
	var spools []string
	for _, s := range sums {
		lost += s.Lost()
		if s.Pending > 0 {
			pending += s.Pending
			spools = append(spools, s.Spool)
		}
	}
	switch {
	case lost > 0:
		return &exitError{exitDropped, fmt.Errorf("%d traces were dropped (see the delivery lines of the summary)", lost)}
	case pending > 0:
		return &exitError{exitSpooled, fmt.Errorf("%d traces not yet delivered are kept in %s; the next collect run with this spool sends them", pending, strings.Join(spools, ", "))}
	}
	return nil
}

// printSummary writes the one-screen end-of-run report.
func (c *collector) printSummary(w io.Writer) {
	s := c.disp.Snapshot()
	el := time.Since(c.started)
	var pkts, bytes uint64
	for e := range s.Packets {
		for o := range s.Packets[e] {
			pkts += s.Packets[e][o]
		}
		bytes += s.Bytes[e]
	}
	r := s.Reassembly
	emitted := r.Exchanges["complete"] + r.Exchanges["truncated"] + r.Exchanges["no_response"]
	fmt.Fprintf(w, "\n── metlo-appliance summary (%s, %s) ──\n", c.src.Name(), el.Round(time.Millisecond))
	fmt.Fprintf(w, "packets   %d (%.1f MB, %.0f pkt/s)\n", pkts, float64(bytes)/1e6, float64(pkts)/max(el.Seconds(), 1e-9))
	for e := 0; e < datapath.NumEncaps; e++ {
		line := ""
		for o := datapath.Outcome(0); o < datapath.NumOutcomes; o++ {
			if n := s.Packets[e][o]; n > 0 {
				line += fmt.Sprintf(" %s=%d", o, n)
			}
		}
		if line != "" {
			fmt.Fprintf(w, "  %-13s%s\n", datapath.Encap(e).String()+":", line)
		}
	}
	if c.captureLine != "" {
		fmt.Fprintf(w, "capture   %s\n", c.captureLine)
	}
	if line := defragLine(s.Defrag); line != "" {
		fmt.Fprintf(w, "ip frags %s\n", line)
	}
	fmt.Fprintf(w, "flows     %d created, %d evicted (idle, max-flows or memory), %d open; http1=%d http2=%d other=%d\n", r.FlowsCreated, r.FlowsEvicted, r.Flows,
		r.Protocols["http1"], r.Protocols["http2"], r.Protocols["other"])
	if r.Protocols["http2"] > 0 {
		fmt.Fprintf(w, "http2    ")
		for _, k := range sortedKeys(r.HTTP2Frames) {
			if r.HTTP2Frames[k] > 0 {
				fmt.Fprintf(w, " %s=%d", k, r.HTTP2Frames[k])
			}
		}
		for _, k := range sortedKeys(r.HTTP2Events) {
			if r.HTTP2Events[k] > 0 {
				fmt.Fprintf(w, " %s=%d", k, r.HTTP2Events[k])
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "exchanges %d emitted (complete=%d truncated=%d no_response=%d); orphan_responses=%d parse_errors=%d non_http_flows=%d\n",
		emitted, r.Exchanges["complete"], r.Exchanges["truncated"], r.Exchanges["no_response"],
		r.Exchanges["orphan_response"], r.Exchanges["parse_error"], r.Exchanges["non_http"])
	if n, m := r.Exchanges["framing_error"], r.Exchanges["late_response"]; n+m > 0 {
		fmt.Fprintf(w, "          framing_errors=%d (reported, flagged) late_responses=%d\n", n, m)
	}
	fmt.Fprintf(w, "tcp       out_of_order=%d gaps=%d", r.OutOfOrderSegments, r.Gaps)
	for _, k := range sortedKeys(r.Drops) {
		if r.Drops[k] > 0 {
			fmt.Fprintf(w, " %s=%d", k, r.Drops[k])
		}
	}
	fmt.Fprintln(w)
	for _, s := range c.exp.Summary() {
		line := ""
		for _, k := range sortedKeys(s.Outcomes) {
			line += fmt.Sprintf(" %s=%d", k, s.Outcomes[k])
		}
		if s.Replayed > 0 {
			line += fmt.Sprintf(" (replayed from the spool: %d)", s.Replayed)
		}
		if s.Pending > 0 {
			line += fmt.Sprintf(" still_spooled=%d (%s)", s.Pending, s.Spool)
		}
		if line == "" && s.Name == "queue" {
			continue
		}
		if line == "" {
			line = " nothing"
		}
		fmt.Fprintf(w, "delivery  %s:%s\n", exporter.MaskURL(s.Name), line)
	}
	if c.offline && !c.metricsServed && c.cfg.MetricsAddr != "" {
		fmt.Fprintf(w, "metrics   not served: an offline run serves /metrics only when --metrics-addr (or METLO_METRICS_ADDR) is given for it\n")
	}
}

// defragLine lists the non-zero IP reassembly counters, or nothing when no fragment came.
func defragLine(d datapath.DefragStats) string {
	line := ""
	for _, f := range []struct {
		name string
		n    uint64
	}{{"reassembled", d.Reassembled}, {"duplicates", d.Duplicates}, {"expired", d.Expired}, {"unfinished", d.Unfinished},
		{"overlapping", d.Overlapping}, {"invalid", d.Invalid}, {"evicted", d.Evicted}, {"ignored", d.Ignored}} {
		if f.n > 0 {
			line += fmt.Sprintf(" %s=%d", f.name, f.n)
		}
	}
	return line
}

// captureStats formats what the source itself counted, above all what the kernel dropped
// before the appliance could read it.
func captureStats(src datapath.Source) string {
	switch s := src.(type) {
	case *pcapsrc.Source:
		st := s.Stats()
		return fmt.Sprintf("frames=%d read_errors=%d", st.Packets, st.ReadErrors)
	case *afpacket.Source:
		st := s.Stats()
		return fmt.Sprintf("frames=%d kernel_drops=%d queue_freezes=%d read_errors=%d", st.Packets, st.Drops, st.QueueFreezes, st.ReadErrors)
	case *udpsrc.Source:
		st := s.Stats()
		return fmt.Sprintf("datagrams=%d socket_drops=%d truncated=%d read_errors=%d", st.Packets, st.Drops, st.Truncated, st.ReadErrors)
	case *xdp.Source:
		counts, err := s.Objects().CounterValues()
		if err != nil {
			return "xdp counters unavailable: " + err.Error()
		}
		line := "xdp"
		for _, k := range sortedKeys(counts) {
			if counts[k] > 0 {
				line += fmt.Sprintf(" %s=%d", k, counts[k])
			}
		}
		return line
	}
	return ""
}
