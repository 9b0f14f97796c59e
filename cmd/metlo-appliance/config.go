package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/exporter"
	"github.com/metlo-labs/metlo-appliance/exporter/spool"
)

// discardLogger keeps validation quiet: building a sink to check its spec logs nothing.
var discardLogger = slog.New(slog.DiscardHandler)

// Config is the appliance's whole configuration. Keys (yaml, env METLO_<KEY>, flag --<key>)
// are the mapstructure tags; defaults come from defaultConfig.
type Config struct {
	// Capture
	Capture     string   `mapstructure:"capture"`        // auto|xdp|afpacket|udp (live); ignored with pcap
	Interface   string   `mapstructure:"interface"`      // capture interface for xdp/afpacket
	Pcap        string   `mapstructure:"pcap"`           // pcap/pcapng file, "-" = stdin
	Sample      bool     `mapstructure:"sample"`         // run on the bundled sample capture
	VXLANPorts  []int    `mapstructure:"vxlan-ports"`    // UDP ports carrying VXLAN
	GENEVEPorts []int    `mapstructure:"geneve-ports"`   // UDP ports carrying GENEVE
	Raw         bool     `mapstructure:"raw"`            // capture unencapsulated TCP not addressed to us (GCP)
	RingBytes   int      `mapstructure:"ring-bytes"`     // kernel buffer of each capture ring (XDP per CPU, AF_PACKET per socket, UDP per socket); 0 = automatic
	AcceptSrcs  []string `mapstructure:"accept-sources"` // outer source CIDRs/addresses tunnel packets are taken from; empty = any
	AcceptVNIs  []int    `mapstructure:"accept-vnis"`    // VNIs tunnel packets are taken with; empty = any
	UDPBind     string   `mapstructure:"udp-bind"`       // address the --capture udp sockets bind; "" = all
	Workers     int      `mapstructure:"workers"`        // reassembly workers; 0 = one per CPU
	Sinks       []string `mapstructure:"sink"`           // jsonl:PATH, metlo:URL

	// Memory, reassembly and HTTP limits
	MemoryLimit     int64         `mapstructure:"memory-limit"`      // the collector's memory budget; 0 = 75% of the cgroup limit, else 50% of RAM
	BodyCap         int           `mapstructure:"body-max-bytes"`    // bytes kept per body; longer bodies are truncated and flagged (old name body-cap)
	MaxFlows        int           `mapstructure:"max-flows"`         // tracked connections across all workers
	FlowBufferBytes int           `mapstructure:"flow-buffer-bytes"` // bytes set aside per connection direction (out-of-order data, held responses)
	BufferBytes     int           `mapstructure:"buffer-bytes"`      // reassembly's memory budget (connections, waiting requests, bodies, buffers); 0 = 40% of memory-limit
	IdleTimeout     time.Duration `mapstructure:"idle-timeout"`      // evict a flow after this long without packets
	ResponseTimeout time.Duration `mapstructure:"response-timeout"`  // response bytes seen before their request wait this long for it

	// Export
	Environment      string        `mapstructure:"environment"`           // meta.environment of every trace
	MetloHost        string        `mapstructure:"metlo-host"`            // Metlo collector URL; adds a metlo: sink when no sink is given (env METLO_HOST)
	MetloKey         string        `mapstructure:"metlo-key"`             // Metlo API key (env METLO_KEY)
	CredentialsFile  string        `mapstructure:"credentials-file"`      // Metlo's KEY=VALUE credentials file (METLO_HOST, METLO_KEY)
	QueueTraces      int           `mapstructure:"queue-traces"`          // intake queue between capture and encoding, in traces
	QueueBytes       int64         `mapstructure:"queue-bytes"`           // intake queue, in bytes; 0 = 15% of memory-limit
	MetloQueueTraces int           `mapstructure:"metlo-queue-traces"`    // traces waiting for the Metlo backend
	MetloQueueBytes  int64         `mapstructure:"metlo-queue-bytes"`     // bytes waiting for the Metlo backend without a spool; 0 = 10% of memory-limit
	BatchSize        int           `mapstructure:"batch-size"`            // traces per POST to the Metlo backend (a batch also closes after 1s)
	RateLimit        float64       `mapstructure:"rate-limit"`            // traces/s sent to the Metlo backend; 0 = unlimited
	RateBurst        int           `mapstructure:"rate-burst"`            // traces that may go at once above rate-limit
	MaxInFlight      int           `mapstructure:"max-inflight"`          // POSTs to the Metlo backend outstanding at once
	MaxLag           time.Duration `mapstructure:"max-lag"`               // shed repeats when the backlog would take longer than this to send; 0 = never
	RequestTimeout   time.Duration `mapstructure:"request-timeout"`       // bound on one request to the Metlo backend
	SpoolDir         string        `mapstructure:"spool-dir"`             // durable spool of traces for the Metlo backend; "" = memory only
	SpoolMaxBytes    int64         `mapstructure:"spool-max-bytes"`       // spool size on disk; 0 = a quarter of its file system
	SpoolFull        string        `mapstructure:"spool-full"`            // drop-oldest|drop-newest when the spool is full
	FlushTimeout     time.Duration `mapstructure:"flush-timeout"`         // how long shutdown waits for queued traces to be delivered
	OfflineTimeout   time.Duration `mapstructure:"offline-flush-timeout"` // how long an offline run keeps delivering after its input ends
	Redact           bool          `mapstructure:"redact"`                // mask credentials (headers, sensitive fields); false sends them verbatim
	RedactHeaders    []string      `mapstructure:"redact-headers"`        // header names masked besides the built-in credential headers
	RedactFields     []string      `mapstructure:"redact-fields"`         // field names masked besides the built-in sensitive names

	// Operations
	MetricsAddr     string        `mapstructure:"metrics-addr"`     // Prometheus /metrics, /healthz, /readyz; "" disables
	SummaryInterval time.Duration `mapstructure:"summary-interval"` // live capture: one summary log line this often; 0 disables
	LogLevel        string        `mapstructure:"log-level"`        // debug|info|warn|error

	origins map[string]origin // where each key's value came from (loadConfig)
}

func defaultConfig() Config {
	return Config{
		Capture:          "auto",
		VXLANPorts:       []int{4789},
		GENEVEPorts:      []int{6081},
		Raw:              true,
		BodyCap:          64 << 10,
		MaxFlows:         1 << 20,
		FlowBufferBytes:  1 << 20,
		IdleTimeout:      2 * time.Minute,
		ResponseTimeout:  30 * time.Second,
		Environment:      "production",
		CredentialsFile:  metloCredentialsFile,
		QueueTraces:      1 << 16,
		MetloQueueTraces: 100_000,
		BatchSize:        500,
		RateLimit:        60,
		RateBurst:        500,
		MaxInFlight:      2,
		MaxLag:           5 * time.Minute,
		RequestTimeout:   10 * time.Second,
		SpoolDir:         "/var/lib/metlo-appliance/spool",
		SpoolFull:        "drop-oldest",
		FlushTimeout:     30 * time.Second,
		OfflineTimeout:   10 * time.Minute,
		Redact:           true,
		MetricsAddr:      ":9731",
		SummaryInterval:  time.Minute,
		LogLevel:         "info",
	}
}

// metloCredentialsFile is where Metlo's own installs keep METLO_HOST, METLO_KEY and
// INTERFACE; a variable for tests.
var metloCredentialsFile = "/opt/metlo/credentials"

// defaultConfigFile is read when --config / METLO_CONFIG name no file; missing is fine.
var defaultConfigFile = "/etc/metlo-appliance/config.yaml"

// envFor maps a key to its environment variable; Metlo's own names win for host and key.
func envFor(key string) string {
	switch key {
	case "metlo-host":
		return "METLO_HOST"
	case "metlo-key":
		return "METLO_KEY"
	}
	return "METLO_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// configKeys lists the keys in Config order.
func configKeys() []string {
	t := reflect.TypeFor[Config]()
	var keys []string
	for i := range t.NumField() {
		if k := t.Field(i).Tag.Get("mapstructure"); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// keyHelp is the one-line description of each key, shown in --help.
var keyHelp = map[string]string{
	"capture": "live capture method: auto|xdp|afpacket|udp", "interface": "capture interface for xdp/afpacket",
	"pcap": "read a pcap/pcapng file instead of capturing (- = stdin)", "sample": "run on the bundled sample capture",
	"vxlan-ports": "UDP ports carrying VXLAN", "geneve-ports": "UDP ports carrying GENEVE",
	"raw": "also capture unencapsulated TCP not addressed to this host (GCP)", "workers": "reassembly workers (0 = one per CPU)",
	"ring-bytes":     "kernel buffer of each capture ring: XDP per CPU, AF_PACKET and UDP per socket (0 = 64 MiB each, less when that would pass 1/16 of memory)",
	"accept-sources": "take tunnel packets only from these outer source CIDRs or addresses (empty: any); repeatable", "accept-vnis": "take tunnel packets only with these VNIs (empty: any)",
	"udp-bind": "address the --capture udp sockets listen on (empty: all addresses)",
	"sink":     "where traces go: jsonl:PATH (- = stdout) or metlo:URL; repeatable or comma-separated", "body-max-bytes": "bytes kept per body (units allowed: 64KiB); longer bodies are truncated and flagged",
	"memory-limit": "the collector's memory budget in bytes, split over buffer-bytes, queue-bytes and metlo-queue-bytes when those are 0 (0 = 75% of the cgroup limit, else 50% of RAM)",
	"max-flows":    "tracked connections across all workers", "flow-buffer-bytes": "bytes set aside per connection direction (out-of-order data, held responses)",
	"buffer-bytes": "reassembly memory budget across all flows: connections, waiting requests, bodies, out-of-order data (0 = 40% of memory-limit)", "idle-timeout": "evict a flow after this long without packets",
	"response-timeout": "how long response bytes seen before their request wait for it", "environment": "meta.environment of every trace",
	"metlo-host": "Metlo collector URL; used as the sink when no --sink is given", "metlo-key": "Metlo API key",
	"credentials-file": "Metlo credentials file (METLO_HOST, METLO_KEY, INTERFACE lines; by default also ~/.metlo/credentials; \"\" = none)", "queue-traces": "intake queue size in traces",
	"queue-bytes": "intake queue size in bytes (0 = 15% of memory-limit)", "metlo-queue-traces": "Metlo sink queue size in traces",
	"metlo-queue-bytes": "Metlo sink queue size in bytes when there is no spool (0 = 10% of memory-limit)", "batch-size": "traces per POST to the Metlo backend",
	"rate-limit": "max traces/s sent to the Metlo backend (0 = unlimited); see docs/configuration.md for sizing", "flush-timeout": "how long shutdown waits to deliver queued traces",
	"rate-burst": "traces that may go at once above rate-limit", "max-inflight": "POSTs to the Metlo backend outstanding at once",
	"max-lag":         "shed repeated endpoints when the backlog would take longer than this to send (0 = never)",
	"request-timeout": "bound on one request to the Metlo backend", "spool-dir": "durable spool for the Metlo backend (\"\" = memory only)",
	"spool-max-bytes": "spool size on disk (0 = a quarter of its file system)", "spool-full": "drop-oldest|drop-newest when the spool is full",
	"offline-flush-timeout": "how long --pcap/--sample runs keep delivering after the input ends",
	"redact":                "mask credentials in traces (false sends them verbatim)",
	"redact-headers":        "header names masked besides the built-in credential headers", "redact-fields": "query/body field names masked besides the built-in sensitive names",
	"metrics-addr": "listen address of /metrics, /healthz, /readyz (empty disables)", "log-level": "debug|info|warn|error",
	"summary-interval": "while capturing live, log one summary line (rates, exchanges, drops) this often (0 disables)",
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// validate checks every value and the combinations of inputs, and fills the sinks from
// metlo-host when none are given. Each error names the key and, unless it is the default,
// where its value came from.
func (c *Config) validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s %s%s", key, fmt.Sprintf(format, args...), c.at(key)))
	}
	oneOf := func(key, val string, allowed ...string) {
		if !slices.Contains(allowed, val) {
			bad(key, "must be %s, got %q", strings.Join(allowed, "|"), val)
		}
	}
	positive := func(key string, val int64) {
		if val <= 0 {
			bad(key, "must be a positive number, got %s", renderValue(reflect.ValueOf(c).Elem().FieldByIndex(mustField(key).Index).Interface()))
		}
	}
	atLeast0 := func(key string, val int64, zero string) {
		if val < 0 {
			bad(key, "must be 0 (%s) or more, got %d", zero, val)
		}
	}
	oneOf("capture", c.Capture, "auto", "xdp", "afpacket", "udp")
	oneOf("log-level", c.LogLevel, "debug", "info", "warn", "error")
	oneOf("spool-full", c.SpoolFull, "drop-oldest", "drop-newest")
	positive("body-max-bytes", int64(c.BodyCap))
	positive("max-flows", int64(c.MaxFlows))
	positive("flow-buffer-bytes", int64(c.FlowBufferBytes))
	positive("idle-timeout", int64(c.IdleTimeout))
	positive("response-timeout", int64(c.ResponseTimeout))
	positive("queue-traces", int64(c.QueueTraces))
	positive("metlo-queue-traces", int64(c.MetloQueueTraces))
	positive("batch-size", int64(c.BatchSize))
	positive("flush-timeout", int64(c.FlushTimeout))
	positive("rate-burst", int64(c.RateBurst))
	positive("max-inflight", int64(c.MaxInFlight))
	positive("request-timeout", int64(c.RequestTimeout))
	positive("offline-flush-timeout", int64(c.OfflineTimeout))
	atLeast0("max-lag", int64(c.MaxLag), "never shed")
	atLeast0("spool-max-bytes", c.SpoolMaxBytes, "a quarter of the file system")
	atLeast0("memory-limit", c.MemoryLimit, "derived")
	atLeast0("buffer-bytes", int64(c.BufferBytes), "derived")
	atLeast0("queue-bytes", c.QueueBytes, "derived")
	atLeast0("metlo-queue-bytes", c.MetloQueueBytes, "derived")
	atLeast0("summary-interval", int64(c.SummaryInterval), "off")
	atLeast0("workers", int64(c.Workers), "one per CPU")
	if c.RingBytes != 0 && (c.RingBytes < 1<<20 || c.RingBytes > 1<<30) {
		bad("ring-bytes", "must be 0 (automatic) or 1 MiB to 1 GiB, got %d", c.RingBytes)
	}
	if _, err := c.acceptSources(); err != nil {
		errs = append(errs, fmt.Errorf("%w%s", err, c.at("accept-sources")))
	}
	if len(c.AcceptVNIs) > 16 {
		bad("accept-vnis", "takes at most 16 VNIs, got %d", len(c.AcceptVNIs))
	}
	for _, v := range c.AcceptVNIs {
		if v < 0 || v >= 1<<24 {
			bad("accept-vnis", "must be 0-16777215, got %d", v)
		}
	}
	if c.UDPBind != "" {
		if _, err := netip.ParseAddr(c.UDPBind); err != nil {
			bad("udp-bind", "must be an IP address: %v", err)
		}
	}
	if c.RateLimit < 0 {
		bad("rate-limit", "must be 0 (unlimited) or more, got %v", c.RateLimit)
	}
	for _, key := range []string{"vxlan-ports", "geneve-ports"} {
		ports := c.VXLANPorts
		if key == "geneve-ports" {
			ports = c.GENEVEPorts
		}
		for _, p := range ports {
			if p < 1 || p > 65535 {
				bad(key, "must be ports 1-65535, got %d", p)
			}
		}
	}
	errs = append(errs, c.conflicts()...)
	if len(c.Sinks) == 0 {
		if c.MetloHost != "" {
			host := c.MetloHost
			if !strings.Contains(host, "://") {
				host = "http://" + host
			}
			c.Sinks = []string{"metlo:" + host}
		} else {
			c.Sinks = []string{"jsonl:-"}
		}
	}
	for _, s := range c.Sinks {
		if _, err := exporter.ParseSink(s, exporter.Options{Logger: discardLogger}); err != nil {
			errs = append(errs, fmt.Errorf("config: sink: %w%s", err, c.at("sink")))
		} else if strings.HasPrefix(s, "metlo:") && c.MetloKey == "" {
			errs = append(errs, fmt.Errorf("config: sink %s needs metlo-key (METLO_KEY, or METLO_KEY= in %s)", exporter.MaskURL(s), c.CredentialsFile))
		}
	}
	return errors.Join(errs...)
}

// conflicts refuses inputs that exclude each other instead of silently picking one: two
// offline inputs, an offline input with live-capture settings given for this run (flags or
// environment; the config file's are the live service's and an offline run ignores them),
// and an interface for UDP capture, which listens on sockets.
func (c *Config) conflicts() []error {
	var errs []error
	if c.Sample && c.Pcap != "" {
		errs = append(errs, fmt.Errorf("config: sample%s and pcap%s both name the input: give one", c.at("sample"), c.at("pcap")))
	}
	if c.Sample || c.Pcap != "" {
		input := "pcap" + c.at("pcap")
		if c.Sample {
			input = "sample" + c.at("sample")
		}
		for _, k := range []string{"capture", "interface", "udp-bind"} {
			if c.explicit(k) {
				errs = append(errs, fmt.Errorf("config: %s%s sets up live capture, but %s reads a capture file: give one or the other", k, c.at(k), input))
			}
		}
	} else if c.Capture == "udp" && c.explicit("capture") && c.explicit("interface") {
		errs = append(errs, fmt.Errorf("config: interface%s is for xdp and afpacket capture; capture udp%s listens on UDP sockets (udp-bind picks the address): give one", c.at("interface"), c.at("capture")))
	}
	return errs
}

// mustField is the Config field of a key known to exist.
func mustField(key string) reflect.StructField {
	f, ok := configField(key)
	if !ok {
		panic("no config key " + key)
	}
	return f
}

// acceptSources parses accept-sources: CIDRs, or single addresses (a /32 or /128).
func (c *Config) acceptSources() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.AcceptSrcs {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("config: accept-sources: %q is neither a CIDR nor an address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	if len(out) > 1024 {
		return nil, fmt.Errorf("config: accept-sources takes at most 1024 entries, got %d", len(out))
	}
	return out, nil
}

// tunnelAccept is the accept-sources and accept-vnis lists as the datapath takes them.
func (c *Config) tunnelAccept() datapath.TunnelAccept {
	srcs, _ := c.acceptSources() // validated by loadConfig
	a := datapath.TunnelAccept{Sources: srcs}
	for _, v := range c.AcceptVNIs {
		a.VNIs = append(a.VNIs, uint32(v))
	}
	return a
}

// exporterOptions turns the export keys into exporter.Options; the caller adds Metrics,
// Ready and Logger.
func (c *Config) exporterOptions() exporter.Options {
	full, _ := spool.ParseFullPolicy(c.SpoolFull) // validated
	return exporter.Options{
		Sinks:         c.Sinks,
		Environment:   c.Environment,
		QueueTraces:   c.QueueTraces,
		QueueBytes:    c.QueueBytes,
		RedactHeaders: c.RedactHeaders,
		RedactFields:  c.RedactFields,
		NoRedact:      !c.Redact,
		Metlo: exporter.MetloOptions{
			Key:            c.MetloKey,
			BatchTraces:    c.BatchSize,
			QueueTraces:    c.MetloQueueTraces,
			QueueBytes:     c.MetloQueueBytes,
			RateLimit:      c.RateLimit,
			RateBurst:      c.RateBurst,
			MaxInFlight:    c.MaxInFlight,
			MaxLag:         c.MaxLag,
			RequestTimeout: c.RequestTimeout,
			SpoolDir:       c.SpoolDir,
			SpoolMaxBytes:  c.SpoolMaxBytes,
			SpoolFull:      full,
		},
	}
}
