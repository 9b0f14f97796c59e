package main

import (
	"log/slog"
	"sort"
	"time"

	"github.com/metlo-labs/metlo-appliance/exporter"
)

// exporterOptions maps the configuration onto the exporter's options.
func exporterOptions(cfg *Config, sinks []string, m *exporter.Metrics, h *exporter.Health, log *slog.Logger) exporter.Options {
	return exporter.Options{Sinks: sinks, Metrics: m, Ready: h, Logger: log}
}

// flushDeadline bounds how long shutdown waits for sinks to deliver what is queued.
func flushDeadline(cfg *Config) time.Duration { return 30 * time.Second }

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
