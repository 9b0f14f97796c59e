package exporter

import (
	"errors"
	"log/slog"
)

// MetloOptions configure metlo: sinks.
type MetloOptions struct {
	// Key is the raw API key sent in the Authorization header.
	Key string
}

// NewMetloSink returns a sink posting batches to a Metlo collector at url.
func NewMetloSink(url string, o MetloOptions, m *Metrics, ready ReadySetter, log *slog.Logger) (Sink, error) {
	return nil, errors.New("metlo sink: not implemented yet")
}
