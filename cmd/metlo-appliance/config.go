package main

import "time"

// Config is the appliance's whole configuration. Keys (yaml, env METLO_<KEY>, flag --<key>)
// are the mapstructure tags; defaults come from defaultConfig.
type Config struct {
	// Capture
	Capture     string   `mapstructure:"capture"`      // auto|xdp|afpacket|udp (live); ignored with pcap
	Interface   string   `mapstructure:"interface"`    // capture interface for xdp/afpacket
	Pcap        string   `mapstructure:"pcap"`         // pcap/pcapng file, "-" = stdin
	Sample      bool     `mapstructure:"sample"`       // run on the bundled sample capture
	VXLANPorts  []int    `mapstructure:"vxlan-ports"`  // UDP ports carrying VXLAN
	GENEVEPorts []int    `mapstructure:"geneve-ports"` // UDP ports carrying GENEVE
	Raw         bool     `mapstructure:"raw"`          // capture unencapsulated TCP not addressed to us (GCP)
	Workers     int      `mapstructure:"workers"`      // reassembly workers; 0 = one per CPU
	Sinks       []string `mapstructure:"sink"`         // jsonl:PATH, metlo:URL

	// Reassembly and HTTP limits
	BodyCap         int           `mapstructure:"body-cap"`          // bytes kept per body; longer bodies are truncated and flagged
	MaxFlows        int           `mapstructure:"max-flows"`         // tracked connections across all workers
	FlowBufferBytes int           `mapstructure:"flow-buffer-bytes"` // out-of-order bytes buffered per flow
	BufferBytes     int           `mapstructure:"buffer-bytes"`      // out-of-order bytes buffered across all flows
	IdleTimeout     time.Duration `mapstructure:"idle-timeout"`      // evict a flow after this long without packets
	ResponseTimeout time.Duration `mapstructure:"response-timeout"`  // emit a request without response after this long

	// Operations
	MetricsAddr string `mapstructure:"metrics-addr"` // Prometheus /metrics, /healthz, /readyz; "" disables
	LogLevel    string `mapstructure:"log-level"`    // debug|info|warn|error
}

func defaultConfig() Config {
	return Config{
		Capture:         "auto",
		VXLANPorts:      []int{4789},
		GENEVEPorts:     []int{6081},
		Raw:             true,
		BodyCap:         64 << 10,
		MaxFlows:        1 << 20,
		FlowBufferBytes: 1 << 20,
		BufferBytes:     256 << 20,
		IdleTimeout:     2 * time.Minute,
		ResponseTimeout: 30 * time.Second,
		MetricsAddr:     ":9731",
		LogLevel:        "info",
	}
}
