package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

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
	BodyCap         int           `mapstructure:"body-cap"`          // bytes kept per body; longer bodies are truncated and flagged
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
		CredentialsFile:  "/opt/metlo/credentials",
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

// configKeys lists the keys in Config order with each field's index.
func configKeys() []string {
	t := reflect.TypeFor[Config]()
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i] = t.Field(i).Tag.Get("mapstructure")
	}
	return keys
}

// addConfigFlags defines --config and one flag per Config key (same name, default from
// defaultConfig), for commands that take the whole configuration.
func addConfigFlags(fs *pflag.FlagSet) {
	def := reflect.ValueOf(defaultConfig())
	t := def.Type()
	fs.String("config", "", "config file (default "+defaultConfigFile+"; env METLO_CONFIG)")
	for i := range t.NumField() {
		key, help := t.Field(i).Tag.Get("mapstructure"), keyHelp[t.Field(i).Tag.Get("mapstructure")]
		help += " (env " + envFor(key) + ")"
		switch v := def.Field(i).Interface().(type) {
		case string:
			if key == "interface" {
				fs.StringP(key, "i", v, help)
			} else {
				fs.String(key, v, help)
			}
		case bool:
			fs.Bool(key, v, help)
		case int:
			fs.Int(key, v, help)
		case int64:
			fs.Int64(key, v, help)
		case float64:
			fs.Float64(key, v, help)
		case time.Duration:
			fs.Duration(key, v, help)
		case []int:
			fs.IntSlice(key, v, help)
		case []string:
			fs.StringSlice(key, v, help)
		}
	}
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
	"sink":     "where traces go: jsonl:PATH (- = stdout) or metlo:URL; repeatable", "body-cap": "bytes kept per body; longer bodies are truncated and flagged",
	"memory-limit": "the collector's memory budget in bytes, split over buffer-bytes, queue-bytes and metlo-queue-bytes when those are 0 (0 = 75% of the cgroup limit, else 50% of RAM)",
	"max-flows":    "tracked connections across all workers", "flow-buffer-bytes": "bytes set aside per connection direction (out-of-order data, held responses)",
	"buffer-bytes": "reassembly memory budget across all flows: connections, waiting requests, bodies, out-of-order data (0 = 40% of memory-limit)", "idle-timeout": "evict a flow after this long without packets",
	"response-timeout": "how long response bytes seen before their request wait for it", "environment": "meta.environment of every trace",
	"metlo-host": "Metlo collector URL; used as the sink when no --sink is given", "metlo-key": "Metlo API key",
	"credentials-file": "Metlo credentials file with METLO_HOST/METLO_KEY lines", "queue-traces": "intake queue size in traces",
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

// loadConfig resolves the configuration with precedence flags (only those the user set) >
// environment > config file > Metlo credentials file > defaults, then validates it.
func loadConfig(cmd *cobra.Command) (*Config, error) {
	keys := configKeys()
	v := viper.New()
	def := reflect.ValueOf(defaultConfig())
	for i, key := range keys {
		v.SetDefault(key, def.Field(i).Interface())
		if err := v.BindEnv(key, envFor(key)); err != nil {
			return nil, fmt.Errorf("config: bind %s: %w", key, err)
		}
	}

	// Metlo's credentials file ranks just above the defaults.
	credPath := defaultConfig().CredentialsFile
	if p := flagOrEnv(cmd, "credentials-file"); p != "" {
		credPath = p
	}

	// Config file: checked key by key so a typo is an error, not silently ignored.
	path, explicit := flagOrEnv(cmd, "config"), true
	if path == "" {
		path, explicit = defaultConfigFile, false
	}
	fileV := viper.New()
	fileV.SetConfigFile(path)
	fileV.SetConfigType("yaml")
	switch err := fileV.ReadInConfig(); {
	case err == nil:
		for _, k := range fileV.AllKeys() {
			if !slices.Contains(keys, k) {
				return nil, fmt.Errorf("config file %s: unknown key %q (known keys: %s)", path, k, strings.Join(sortedCopy(keys), ", "))
			}
		}
		if err := v.MergeConfigMap(fileV.AllSettings()); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
		if p := fileV.GetString("credentials-file"); p != "" && flagOrEnv(cmd, "credentials-file") == "" {
			credPath = p
		}
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	default:
		return nil, fmt.Errorf("read config file %s: %w", path, err)
	}
	creds, err := readCredentials(credPath)
	if err != nil {
		return nil, err
	}
	for k, val := range creds {
		v.SetDefault(k, val)
	}

	visit := func(f *pflag.Flag) {
		if f.Changed && slices.Contains(keys, f.Name) {
			v.BindPFlag(f.Name, f)
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)

	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// flagOrEnv is the value of flag name if the user set it, else of its environment variable.
func flagOrEnv(cmd *cobra.Command, name string) string {
	if f := cmd.Flags().Lookup(name); f != nil && f.Changed {
		return f.Value.String()
	}
	return os.Getenv(envFor(name))
}

// readCredentials reads METLO_HOST and METLO_KEY from Metlo's KEY=VALUE file; a missing
// file is not an error.
func readCredentials(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metlo credentials %s: %w", path, err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, val, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"'`)
		switch strings.TrimSpace(k) {
		case "METLO_HOST":
			out["metlo-host"] = val
		case "METLO_KEY":
			out["metlo-key"] = val
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metlo credentials %s: %w", path, err)
	}
	return out, nil
}

// validate checks every value and fills the sinks from metlo-host when none are given.
func (c *Config) validate() error {
	oneOf := func(key, val string, allowed ...string) error {
		if !slices.Contains(allowed, val) {
			return fmt.Errorf("config: %s must be %s, got %q", key, strings.Join(allowed, "|"), val)
		}
		return nil
	}
	positive := func(key string, val int64) error {
		if val <= 0 {
			return fmt.Errorf("config: %s must be a positive number, got %d", key, val)
		}
		return nil
	}
	errs := []error{
		oneOf("capture", c.Capture, "auto", "xdp", "afpacket", "udp"),
		oneOf("log-level", c.LogLevel, "debug", "info", "warn", "error"),
		positive("body-cap", int64(c.BodyCap)), positive("max-flows", int64(c.MaxFlows)),
		positive("flow-buffer-bytes", int64(c.FlowBufferBytes)),
		positive("idle-timeout", int64(c.IdleTimeout)), positive("response-timeout", int64(c.ResponseTimeout)),
		positive("queue-traces", int64(c.QueueTraces)), positive("metlo-queue-traces", int64(c.MetloQueueTraces)),
		positive("batch-size", int64(c.BatchSize)), positive("flush-timeout", int64(c.FlushTimeout)),
		positive("rate-burst", int64(c.RateBurst)), positive("max-inflight", int64(c.MaxInFlight)),
		positive("request-timeout", int64(c.RequestTimeout)), positive("offline-flush-timeout", int64(c.OfflineTimeout)),
		oneOf("spool-full", c.SpoolFull, "drop-oldest", "drop-newest"),
	}
	if c.MaxLag < 0 || c.SpoolMaxBytes < 0 {
		errs = append(errs, errors.New("config: max-lag and spool-max-bytes must be 0 or more"))
	}
	if c.MemoryLimit < 0 || c.BufferBytes < 0 || c.QueueBytes < 0 || c.MetloQueueBytes < 0 {
		errs = append(errs, errors.New("config: memory-limit, buffer-bytes, queue-bytes and metlo-queue-bytes must be 0 (derived) or more"))
	}
	if c.SummaryInterval < 0 {
		errs = append(errs, fmt.Errorf("config: summary-interval must be 0 (off) or more, got %v", c.SummaryInterval))
	}
	if c.RingBytes != 0 && (c.RingBytes < 1<<20 || c.RingBytes > 1<<30) {
		errs = append(errs, fmt.Errorf("config: ring-bytes must be 0 (automatic) or 1 MiB to 1 GiB, got %d", c.RingBytes))
	}
	if _, err := c.acceptSources(); err != nil {
		errs = append(errs, err)
	}
	if len(c.AcceptVNIs) > 16 {
		errs = append(errs, fmt.Errorf("config: accept-vnis takes at most 16 VNIs, got %d", len(c.AcceptVNIs)))
	}
	for _, v := range c.AcceptVNIs {
		if v < 0 || v >= 1<<24 {
			errs = append(errs, fmt.Errorf("config: accept-vnis must be 0-16777215, got %d", v))
		}
	}
	if c.UDPBind != "" {
		if _, err := netip.ParseAddr(c.UDPBind); err != nil {
			errs = append(errs, fmt.Errorf("config: udp-bind must be an IP address: %w", err))
		}
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("config: workers must be 0 (one per CPU) or more, got %d", c.Workers))
	}
	if c.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("config: rate-limit must be 0 (unlimited) or more, got %v", c.RateLimit))
	}
	for key, ports := range map[string][]int{"vxlan-ports": c.VXLANPorts, "geneve-ports": c.GENEVEPorts} {
		for _, p := range ports {
			if p < 1 || p > 65535 {
				errs = append(errs, fmt.Errorf("config: %s must be ports 1-65535, got %d", key, p))
			}
		}
	}
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
			errs = append(errs, fmt.Errorf("config: sink: %w", err))
		} else if strings.HasPrefix(s, "metlo:") && c.MetloKey == "" {
			errs = append(errs, fmt.Errorf("config: sink %s needs metlo-key (METLO_KEY or %s)", exporter.MaskURL(s), c.CredentialsFile))
		}
	}
	return errors.Join(errs...)
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
