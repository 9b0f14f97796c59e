package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/xdp"
	"github.com/metlo-labs/metlo-appliance/exporter"
)

// captureState adapts the running source and dispatcher to exporter.CaptureStats.
type captureState struct {
	c  *collector
	up atomic.Bool
}

// CaptureSnapshot implements exporter.CaptureStats.
func (s *captureState) CaptureSnapshot() exporter.CaptureSnapshot {
	c := s.c
	out := exporter.CaptureSnapshot{Up: s.up.Load(), Dropped: map[string]uint64{}, Rejected: map[string]uint64{}}
	if c.src != nil {
		out.Method = c.src.Name()
		out.Interface = c.cfg.Interface
		if x, ok := c.src.(*xdp.Source); ok {
			out.Mode = string(x.Mode())
		}
		if out.Method == "udp" {
			out.Interface = c.cfg.UDPBind
		}
		if ss, ok := c.src.(datapath.StatsSource); ok {
			st := ss.SourceStats()
			for k, v := range st.Dropped {
				out.Dropped[k] += v
			}
			for k, v := range st.Rejected {
				out.Rejected[k] += v
			}
			out.RingFreezes = st.RingFreezes
		}
	}
	d := c.disp.Snapshot()
	out.BackpressureWaits = d.BackpressureWaits
	out.BackpressureSeconds = d.BackpressureTime.Seconds()
	for k, v := range d.Rejected {
		out.Rejected[k] += v
	}
	out.OneSidedFlows = d.Reassembly.OneSidedFlows
	out.FlowsEnded = d.Reassembly.FlowsEnded
	return out
}

// notLoss are the reassembly drop reasons that lose nothing: duplicates and late copies of
// closed connections. Every other reason, present or future, is a loss.
var notLoss = []string{"duplicate", "closed_flow"}

// pulse is one reading of the counters the live summary line compares.
type pulse struct {
	at                            time.Time
	packets, exchanges            uint64
	captureDrops, reassemblyDrops uint64
	backpressure                  time.Duration
}

func (s *captureState) pulse() pulse {
	d := s.c.disp.Snapshot()
	p := pulse{at: time.Now(), backpressure: d.BackpressureTime}
	for e := range d.Packets {
		for o := range d.Packets[e] {
			p.packets += d.Packets[e][o]
		}
	}
	r := d.Reassembly
	p.exchanges = r.Exchanges["complete"] + r.Exchanges["truncated"] + r.Exchanges["no_response"]
	for k, n := range r.Drops {
		if !slices.Contains(notLoss, k) {
			p.reassemblyDrops += n
		}
	}
	if ss, ok := s.c.src.(datapath.StatsSource); ok {
		for _, v := range ss.SourceStats().Dropped {
			p.captureDrops += v
		}
	}
	return p
}

// logSummaries writes one line every interval while capture runs: packet and exchange
// rates and what was lost since the last line, so a live appliance shows its pulse in the
// journal without a metrics stack.
func (s *captureState) logSummaries(ctx context.Context, log *slog.Logger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := s.pulse()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.pulse()
		secs := max(now.at.Sub(last.at).Seconds(), 1e-9)
		pps, eps := int64(float64(now.packets-last.packets)/secs), int64(float64(now.exchanges-last.exchanges)/secs)
		s.c.notify.status(fmt.Sprintf("%s: %d packets/s, %d exchanges/s, %d exchanges", s.statusLine(), pps, eps, now.exchanges))
		log.Info("capture",
			"packets_per_s", pps,
			"exchanges_per_s", eps,
			"exchanges", now.exchanges,
			"capture_drops", now.captureDrops-last.captureDrops,
			"reassembly_drops", now.reassemblyDrops-last.reassemblyDrops,
			"backpressure", (now.backpressure - last.backpressure).Round(time.Millisecond),
			"flows", s.c.disp.Snapshot().Reassembly.Flows)
		last = now
	}
}

// statusLine says how the collector captures: "capturing on ens5 with xdp (native)".
func (s *captureState) statusLine() string {
	snap := s.CaptureSnapshot()
	line := "capturing with " + snap.Method
	if snap.Mode != "" {
		line += " (" + snap.Mode + ")"
	}
	if snap.Interface != "" {
		line += " on " + snap.Interface
	}
	return line
}

// responsive is the watchdog's check: the pipeline's counters can still be read (a wedged
// dispatcher or a stalled runtime blocks here, and the ping is missed).
func (s *captureState) responsive() bool {
	_ = s.pulse()
	return true
}
