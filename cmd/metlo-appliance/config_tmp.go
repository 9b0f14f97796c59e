package main

import "github.com/spf13/cobra"

// loadConfig (temporary until the viper loader lands) reads the command's flags.
func loadConfig(cmd *cobra.Command) (*Config, error) {
	c := defaultConfig()
	fs := cmd.Flags()
	c.Capture, _ = fs.GetString("capture")
	c.Interface, _ = fs.GetString("interface")
	c.Pcap, _ = fs.GetString("pcap")
	c.Sample, _ = fs.GetBool("sample")
	c.VXLANPorts, _ = fs.GetIntSlice("vxlan-ports")
	c.GENEVEPorts, _ = fs.GetIntSlice("geneve-ports")
	c.Raw, _ = fs.GetBool("raw")
	c.Workers, _ = fs.GetInt("workers")
	c.Sinks, _ = fs.GetStringArray("sink")
	c.BodyCap, _ = fs.GetInt("body-cap")
	c.MaxFlows, _ = fs.GetInt("max-flows")
	c.FlowBufferBytes, _ = fs.GetInt("flow-buffer-bytes")
	c.BufferBytes, _ = fs.GetInt("buffer-bytes")
	c.IdleTimeout, _ = fs.GetDuration("idle-timeout")
	c.ResponseTimeout, _ = fs.GetDuration("response-timeout")
	c.MetricsAddr, _ = fs.GetString("metrics-addr")
	c.LogLevel, _ = fs.GetString("log-level")
	return &c, nil
}
