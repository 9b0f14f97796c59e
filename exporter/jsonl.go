package exporter

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// jsonlFlushInterval bounds how long a written trace may sit in the buffer.
const jsonlFlushInterval = time.Second

// JSONLSink writes one trace per line to a file or stdout through a buffer flushed at least
// every second and on Close.
type JSONLSink struct {
	path   string
	counts *sinkCounters
	log    *slog.Logger

	mu        sync.Mutex
	w         *bufio.Writer
	file      *os.File // nil for stdout
	failed    bool     // a write failed; logged once
	stop      chan struct{}
	flushDone chan struct{}
}

// NewJSONLSink returns a sink writing to path ("-" = stdout); Start opens it.
func NewJSONLSink(path string, m *Metrics, log *slog.Logger) *JSONLSink {
	return &JSONLSink{path: path, counts: m.forSink("jsonl:"+path, jsonlOutcomes...), log: log}
}

// Name implements Sink.
func (s *JSONLSink) Name() string { return "jsonl:" + s.path }

// Start opens the output (appending to an existing file) and starts the periodic flush.
func (s *JSONLSink) Start(ctx context.Context) error {
	var out io.Writer = os.Stdout
	if s.path != "-" {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("open jsonl sink: %w", err)
		}
		s.file, out = f, f
	}
	s.w = bufio.NewWriterSize(out, 256<<10)
	s.stop, s.flushDone = make(chan struct{}), make(chan struct{})
	go s.flushLoop()
	return nil
}

func (s *JSONLSink) flushLoop() {
	defer close(s.flushDone)
	t := time.NewTicker(jsonlFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			s.noteErr(s.w.Flush())
			s.mu.Unlock()
		}
	}
}

// Put implements Sink.
func (s *JSONLSink) Put(trace []byte, _ TraceInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		s.counts.add(OutcomeDroppedWriteError, 1)
		return
	}
	s.w.Write(trace)
	if err := s.w.WriteByte('\n'); err != nil {
		s.noteErr(err)
		s.counts.add(OutcomeDroppedWriteError, 1)
		return
	}
	s.counts.add(OutcomeSent, 1)
}

// noteErr logs the first write failure; bufio keeps returning it, so later traces are
// counted as dropped_write_error without flooding the log.
func (s *JSONLSink) noteErr(err error) {
	if err != nil && !s.failed {
		s.failed = true
		s.log.Error("jsonl sink write failed; dropping its traces", "sink", s.Name(), "err", err)
	}
}

func (s *JSONLSink) summary() SinkSummary {
	return SinkSummary{Name: s.Name(), Outcomes: s.counts.snapshot()}
}

// Close flushes the buffer and closes the file.
func (s *JSONLSink) Close(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	close(s.stop)
	<-s.flushDone
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.w.Flush()
	s.w = nil
	if s.file != nil {
		if cerr := s.file.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("close jsonl sink %s: %w", s.path, err)
	}
	return nil
}
