package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/afpacket"
	"github.com/metlo-labs/metlo-appliance/datapath/localaddr"
	"github.com/metlo-labs/metlo-appliance/datapath/pcapsrc"
	"github.com/metlo-labs/metlo-appliance/datapath/udpsrc"
	"github.com/metlo-labs/metlo-appliance/datapath/xdp"
	"github.com/metlo-labs/metlo-appliance/exporter"
	"github.com/metlo-labs/metlo-appliance/reassembly"
)

// sampleCapture is a small VXLAN mirror capture of real lab traffic, for `collect --sample`.
//
//go:embed sample.pcap
var sampleCapture []byte

func newCollectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "collect",
		Short: "Capture mirrored traffic and export every HTTP exchange as a Metlo trace",
		Long: `Capture mirrored traffic (live, or from a capture file) and export every HTTP/1.x
request/response pair as a Metlo trace.

Live capture (--capture): auto tries XDP in native then generic mode, then AF_PACKET;
udp listens on the VXLAN/GENEVE ports with plain sockets (no root needed).
Offline: --pcap FILE (pcap or pcapng, '-' = stdin) or --sample (a bundled capture)
processes the input as fast as possible (with a progress line when stderr is a terminal
and the traces do not go to it), prints a summary to stderr and exits; it exits 3 when
traces were dropped and 4 when undelivered traces wait in the spool.

Exit status: 0 success, 1 runtime failure, 64 malformed command line, 78 configuration
error (a bad value, conflicting inputs, a missing file or interface), 3 and 4 as above.`,
		Example: `  metlo-appliance collect --sample
  metlo-appliance collect --pcap mirror.pcapng --sink jsonl:traces.jsonl
  metlo-appliance collect --capture auto -i eth0 --sink metlo:https://metlo.internal:8081`,
		Args: cobra.NoArgs,
	}
	addConfigFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(cmd)
		if err != nil {
			return err
		}
		return runCollect(cmd.Context(), cfg, cmd.ErrOrStderr())
	}
	return cmd
}

// collector is one run of the capture pipeline.
type collector struct {
	cfg      *Config
	log      *slog.Logger
	metrics  *exporter.Metrics
	health   *exporter.Health
	exp      *exporter.Exporter
	disp     *datapath.Dispatcher
	src      datapath.Source
	offline  bool
	started  time.Time
	closeSrc func() error
	// captureLine is the source's own counters (kernel drops), read before it closes.
	captureLine string
	// local is the host's own addresses, followed live while capturing.
	local *datapath.LocalSet
	// capture reports the live capture's state and losses to /metrics and the log.
	capture *captureState
	// in is the --pcap file, opened before anything else.
	in *captureFile
	// metricsServed says whether /metrics is served (an offline run serves it only when
	// metrics-addr was given for the run).
	metricsServed bool
	// notify talks to systemd (Type=notify).
	notify notifier
}

func runCollect(ctx context.Context, cfg *Config, stderr io.Writer) error {
	// The input first: a mistake in its name is then the only thing the run prints.
	var in *captureFile
	switch {
	case cfg.Pcap != "":
		var err error
		if in, err = openCapture(cfg.Pcap); err != nil {
			return err
		}
		defer in.Close()
	case cfg.Sample:
	case cfg.Capture == "udp":
	case cfg.Interface == "":
		return configError(fmt.Errorf("--capture %s needs an interface: add -i IFACE (or use --pcap FILE / --capture udp)", cfg.Capture))
	default:
		if err := checkInterface(cfg.Interface); err != nil {
			return err
		}
	}
	var progress *terminal
	if width := terminalWidth(stderr); in != nil && width > 0 && !tracesOnTerminal(cfg.Sinks, os.Stdout) {
		progress = &terminal{w: stderr, width: width}
		stderr = progress // log lines clear the progress line first
	}
	log := newLogger(cfg.LogLevel, stderr)
	memSource := cfg.resolveMemory()
	if os.Getenv("GOMEMLIMIT") == "" {
		// The budgets take about two thirds of the limit; the garbage collector works
		// harder as the heap nears it, instead of letting garbage grow past it.
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	level := slog.LevelInfo
	if cfg.Pcap != "" || cfg.Sample {
		level = slog.LevelDebug // an offline run's stderr is its summary
	}
	log.Log(ctx, level, "memory budget", "memory-limit", cfg.MemoryLimit, "from", memSource,
		"buffer-bytes", cfg.BufferBytes, "queue-bytes", cfg.QueueBytes, "metlo-queue-bytes", cfg.MetloQueueBytes)
	c := &collector{cfg: cfg, log: log, offline: cfg.Pcap != "" || cfg.Sample, started: time.Now(), in: in, notify: notifier{log}}
	c.metrics = exporter.NewBuildMetrics(buildVersion())
	c.health = exporter.NewHealth()
	if err := c.metrics.RegisterRuntime(); err != nil {
		return err
	}
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSrv()
	// An offline run serves /metrics only when metrics-addr was given for it (flag or
	// environment): the config file's address is the live service's, which holds it.
	c.metricsServed = cfg.MetricsAddr != "" && (!c.offline || cfg.explicit("metrics-addr"))
	if c.metricsServed {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", cfg.MetricsAddr, err)
		}
		go func() {
			if err := exporter.ServeListener(srvCtx, ln, c.metrics, c.health, log); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
	}
	var err error
	opts := cfg.exporterOptions()
	opts.Metrics, opts.Ready, opts.Logger = c.metrics, c.health, log
	if c.offline {
		// A file can wait for the encoders: nothing is dropped, and a short queue keeps
		// memory (and page faults) low. The file is the durable copy: without a usable
		// spool the run queues in memory, and it never sheds.
		opts.Block, opts.QueueTraces = true, min(opts.QueueTraces, 4096)
		opts.Metlo.SpoolFallback, opts.Metlo.MaxLag = true, 0
		if cfg.Workers == 1 {
			// One worker emits exchanges in a fixed order; one encoder keeps it, so a
			// replay writes the same bytes every time.
			opts.Encoders = 1
		}
	}
	if !cfg.Redact {
		log.Warn("redaction is off (redact: false): credentials in headers, query strings and bodies are exported verbatim")
	}
	c.exp, err = exporter.New(ctx, opts)
	if err != nil {
		return err
	}
	if !c.offline {
		stop := c.followLocalAddrs(ctx)
		defer stop()
	}
	c.disp = datapath.NewDispatcher(c.dispatcherConfig(), c.exp)
	if err := c.metrics.RegisterPipeline(pipelineStats{c.disp}); err != nil {
		return err
	}
	if err := c.metrics.Register(c.disp.DefragCollector()); err != nil {
		return err
	}
	c.capture = &captureState{c: c}
	if !c.offline {
		if err := c.metrics.RegisterCapture(c.capture); err != nil {
			return err
		}
	}
	if err := c.openSource(ctx); err != nil {
		c.disp.Close()
		_ = c.exp.Close(context.Background())
		return err
	}
	if !c.offline && len(cfg.Sinks) == 1 && cfg.Sinks[0] == "jsonl:-" && cfg.MetloHost == "" {
		log.Warn("no sink configured: traces go to stdout; set --sink metlo:URL (or METLO_HOST) to ship them")
	}
	if !c.offline {
		acc := cfg.tunnelAccept()
		srcs, vnis := "any", "any"
		if len(acc.Sources) > 0 {
			srcs = fmt.Sprint(acc.Sources)
		}
		if len(acc.VNIs) > 0 {
			vnis = fmt.Sprint(acc.VNIs)
		}
		log.Info("tunnel packets accepted", "sources", srcs, "vnis", vnis)
	}
	c.health.SetReady("capture", true)
	c.capture.up.Store(true)
	logCtx, stopLog := context.WithCancel(ctx)
	var bg sync.WaitGroup
	if cfg.SummaryInterval > 0 && !c.offline {
		bg.Go(func() { c.capture.logSummaries(logCtx, log, cfg.SummaryInterval) })
	}
	if !c.offline {
		c.notify.ready(c.capture.statusLine())
		// Pinged until the collector returns: the shutdown flush (up to flush-timeout) must
		// not look like a hang.
		wdCtx, stopWatchdog := context.WithCancel(context.WithoutCancel(ctx))
		defer stopWatchdog()
		go c.notify.watchdog(wdCtx, c.capture.responsive)
	}
	if progress != nil {
		bg.Go(func() { showProgress(logCtx, progress, in, progressInterval, c.progressReading) })
	}
	runErr := c.src.Run(ctx, c.disp.NewHandler)
	stopLog()
	bg.Wait()
	if !c.offline {
		c.notify.stopping()
	}
	switch {
	case runErr != nil && c.in != nil && c.in.read.Load() == 0:
		runErr = fmt.Errorf("capture file %s is empty: nothing to read", c.inputName()) // a pipe with nothing in it
	case runErr != nil && c.offline:
		runErr = fmt.Errorf("capture file %s: %w", c.inputName(), runErr)
	}
	c.capture.up.Store(false)
	c.health.SetReady("capture", false)
	c.captureLine = captureStats(c.src)
	if c.closeSrc != nil {
		if err := c.closeSrc(); err != nil {
			log.Warn("closing capture", "err", err)
		}
	}
	c.disp.Close()
	expErr := c.closeExporter(ctx, stderr)
	if runErr == nil || c.disp.Snapshot().Reassembly.Segments > 0 {
		c.printSummary(stderr) // a source that failed before any traffic has nothing to sum up
	}
	if runErr != nil {
		return runErr
	}
	if c.offline {
		if err := deliveryOutcome(c.exp.Summary()); err != nil {
			if expErr != nil {
				log.Warn("closing the exporter", "err", expErr)
			}
			return err
		}
	}
	return expErr
}

// closeExporter delivers what is queued: for flush-timeout when a live collector stops,
// for offline-flush-timeout after an offline run's input ends, reporting progress meanwhile.
func (c *collector) closeExporter(ctx context.Context, stderr io.Writer) error {
	timeout := c.cfg.FlushTimeout
	if c.offline {
		timeout = c.cfg.OfflineTimeout
	}
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.exp.Close(flushCtx) }()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			for _, s := range c.exp.Summary() {
				if s.Pending > 0 {
					c.log.Info("delivering queued traces", "sink", s.Name, "waiting", s.Pending, "sent", s.Outcomes[exporter.OutcomeSent],
						"gives_up_in", time.Until(deadlineOf(flushCtx)).Round(time.Second))
				}
			}
		}
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

func (c *collector) dispatcherConfig() datapath.DispatcherConfig {
	cfg := c.cfg
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	dc := datapath.DecoderConfig{
		VXLANPorts:  toPorts(cfg.VXLANPorts),
		GENEVEPorts: toPorts(cfg.GENEVEPorts),
		Raw:         cfg.Raw,
		Exclude:     c.exp.BackendEndpoints(),
	}
	dc.Local = c.local
	return datapath.DispatcherConfig{
		Workers: workers,
		Decoder: dc,
		Accept:  cfg.tunnelAccept(),
		Live:    !c.offline,
		Reassembly: reassembly.Config{
			BodyCap:         cfg.BodyCap,
			MaxFlows:        cfg.MaxFlows,
			FlowBufferBytes: cfg.FlowBufferBytes,
			BufferBytes:     cfg.BufferBytes,
			IdleTimeout:     cfg.IdleTimeout,
			ResponseTimeout: cfg.ResponseTimeout,
		},
	}
}

// openSource picks the frame source; with capture "auto" it falls back from native XDP to
// generic XDP to AF_PACKET, logging once why each step was skipped.
func (c *collector) openSource(ctx context.Context) error {
	cfg := c.cfg
	switch {
	case cfg.Sample:
		c.src = pcapsrc.New(pcapsrc.Config{Path: "-", Stdin: bytes.NewReader(sampleCapture), Logger: c.log})
		return nil
	case cfg.Pcap != "":
		c.src = pcapsrc.New(pcapsrc.Config{Path: cfg.Pcap, Reader: c.in, Logger: c.log})
		return nil
	case cfg.Capture == "udp":
		ring := cfg.RingBytes
		if ring == 0 {
			ring = datapath.DefaultRingBytes()
		}
		s, err := udpsrc.New(udpsrc.Config{VXLANPorts: cfg.VXLANPorts, GENEVEPorts: cfg.GENEVEPorts, RecvBuffer: ring,
			BindAddr: cfg.UDPBind, AcceptSources: cfg.tunnelAccept().Sources, Logger: c.log})
		if err != nil {
			return err
		}
		c.src, c.closeSrc = s, s.Close
		return nil
	}
	if cfg.Capture == "xdp" || cfg.Capture == "auto" {
		for _, mode := range []xdp.Mode{xdp.ModeNative, xdp.ModeGeneric} {
			xc := xdp.DefaultConfig(cfg.Interface)
			xc.VXLANPorts, xc.GENEVEPorts = toPorts(cfg.VXLANPorts), toPorts(cfg.GENEVEPorts)
			xc.Raw, xc.Mode, xc.Logger, xc.RingBytes = cfg.Raw, mode, c.log, cfg.RingBytes
			acc := cfg.tunnelAccept()
			xc.AcceptSources, xc.AcceptVNIs = acc.Sources, acc.VNIs
			s, err := xdp.Open(xc)
			if err == nil {
				if err := c.metrics.Register(s.Collector()); err != nil {
					c.log.Warn("xdp counters not exported", "err", err)
				}
				c.src, c.closeSrc = s, s.Close
				return nil
			}
			// Only a driver or MTU limit of native mode is worth a generic-mode attempt.
			retry := mode == xdp.ModeNative && (errors.Is(err, xdp.ErrNativeUnsupported) || errors.Is(err, xdp.ErrMTUTooLarge))
			if cfg.Capture == "xdp" && !retry {
				return fmt.Errorf("--capture xdp: %w", err)
			}
			c.log.Warn("xdp capture unavailable, trying the next method", "mode", mode, "reason", err)
			if !retry {
				break
			}
		}
	}
	s, err := afpacket.New(afpacket.Config{Interface: cfg.Interface, RingBytes: cfg.RingBytes, Logger: c.log})
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w (AF_PACKET capture needs root or CAP_NET_RAW; --capture udp needs neither)", err)
	}
	if err != nil {
		return err
	}
	c.src, c.closeSrc = s, s.Close
	return nil
}

// inputName names an offline run's input in errors.
func (c *collector) inputName() string {
	if c.in != nil {
		return c.in.name
	}
	return "(the bundled sample)"
}

// progressReading is the packets and exchanges so far, for the progress line.
func (c *collector) progressReading() progressReading {
	s := c.disp.Snapshot()
	var r progressReading
	for e := range s.Packets {
		for o := range s.Packets[e] {
			r.packets += s.Packets[e][o]
		}
	}
	x := s.Reassembly.Exchanges
	r.exchanges = x["complete"] + x["truncated"] + x["no_response"]
	return r
}

// pipelineStats adapts the dispatcher's snapshot to the exporter's metrics collector.
type pipelineStats struct{ d *datapath.Dispatcher }

func (p pipelineStats) Snapshot() exporter.PipelineSnapshot {
	s := p.d.Snapshot()
	out := exporter.PipelineSnapshot{
		Packets:            map[exporter.PacketKey]uint64{},
		Bytes:              map[string]uint64{},
		Flows:              s.Reassembly.Flows,
		OutOfOrderSegments: s.Reassembly.OutOfOrderSegments,
		Gaps:               s.Reassembly.Gaps,
		BufferedBytes:      s.Reassembly.BufferedBytes,
		Drops:              s.Reassembly.Drops,
		Exchanges:          s.Reassembly.Exchanges,
		Protocols:          s.Reassembly.Protocols,
		HTTP2Frames:        s.Reassembly.HTTP2Frames,
		HTTP2Events:        s.Reassembly.HTTP2Events,
	}
	for e := range s.Packets {
		enc := datapath.Encap(e).String()
		for o := range s.Packets[e] {
			out.Packets[exporter.PacketKey{Encap: enc, Outcome: datapath.Outcome(o).String()}] = s.Packets[e][o]
		}
		out.Bytes[enc] = s.Bytes[e]
	}
	return out
}

func toPorts(ps []int) []uint16 {
	out := make([]uint16, 0, len(ps))
	for _, p := range ps {
		out = append(out, uint16(p))
	}
	return out
}

// followLocalAddrs keeps c.local equal to this host's addresses and local routes (raw
// capture never traces the host's own traffic) until the returned stop is called.
func (c *collector) followLocalAddrs(ctx context.Context) (stop func()) {
	w, err := localaddr.Open()
	if err != nil {
		c.log.Warn("cannot follow local addresses; using the current ones only", "err", err)
		c.local = datapath.NewLocalSet(staticHostAddrs(c.log), nil)
		return func() {}
	}
	set := w.Current()
	c.local = datapath.NewLocalSet(set.Addrs, set.Prefixes)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := w.Run(ctx, func(s localaddr.Set) {
			added, removed := set.Diff(s)
			set = s
			c.local.Set(s.Addrs, s.Prefixes)
			c.log.Debug("decoder's local addresses changed", "added", added, "removed", removed)
		})
		if err != nil {
			c.log.Warn("no longer following local addresses", "err", err)
		}
	}()
	return func() { w.Close(); <-done }
}

// staticHostAddrs lists this host's addresses once.
func staticHostAddrs(log *slog.Logger) []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		log.Warn("cannot list local addresses; raw capture may trace this host's own traffic", "err", err)
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
