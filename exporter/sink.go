package exporter

import (
	"context"
	"fmt"
	"strings"
)

// Sink receives encoded traces from the exporter's single encoding goroutine.
type Sink interface {
	// Name labels the sink in metrics, logs and readiness (its spec without secrets).
	Name() string
	// Start opens the sink; an error means the sink can never work (bad path, rejected key).
	Start(ctx context.Context) error
	// Put takes one trace, a JSON object without a trailing newline, and what the sink may
	// need to know about it. It must not block for long and must not keep trace after it
	// returns (the buffer is reused).
	Put(trace []byte, info TraceInfo)
	// Close flushes what the sink still holds until ctx ends, counts the rest as dropped and
	// releases the sink.
	Close(ctx context.Context) error
}

// SinkSummary is what became of the traces one sink was given.
type SinkSummary struct {
	Name     string
	Outcomes map[string]uint64 // non-zero outcome counts (metlo_appliance_exporter_traces_total)
	Pending  int64             // traces the sink still holds after Close (spooled for the next run)
	Replayed int64             // traces found in the spool at start, left by an earlier run
	Spool    string            // the spool directory, "" when the sink keeps nothing on disk
}

// Lost is how many traces the sink dropped or shed.
func (s SinkSummary) Lost() uint64 {
	var n uint64
	for o, c := range s.Outcomes {
		if IsLoss(o) {
			n += c
		}
	}
	return n
}

// summarizer is implemented by sinks that report more than their outcome counts.
type summarizer interface{ summary() SinkSummary }

// sizeLimited is implemented by sinks that reject traces over a size, so the exporter trims
// bodies before encoding rather than losing the trace.
type sizeLimited interface {
	MaxTraceBytes() int
}

// ParseSink builds a sink from its spec: "jsonl:PATH" (PATH "-" is stdout) or "metlo:URL".
func ParseSink(spec string, opts Options) (Sink, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok || arg == "" {
		return nil, fmt.Errorf("sink %q: want jsonl:PATH or metlo:URL", MaskURL(spec))
	}
	switch kind {
	case "jsonl":
		return NewJSONLSink(arg, opts.metrics(), opts.logger()), nil
	case "metlo":
		s, err := NewMetloSink(arg, opts.Metlo, opts.metrics(), opts.Ready, opts.logger())
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("sink %q: unknown kind %q (accepted: jsonl, metlo)", MaskURL(spec), kind)
	}
}
