package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

// recorder assigns each request its sequence number on receipt and appends one ground-truth
// line when the handler finishes. net/http serves a connection's requests one at a time, so
// lines of one connection come out in the order they were received.
type recorder struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	seq atomic.Int64
	n   atomic.Int64
}

func newRecorder(path string) (*recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create ground truth: %w", err)
	}
	return &recorder{f: f, w: bufio.NewWriter(f)}, nil
}

// Count returns how many exchanges were recorded.
func (r *recorder) Count() int64 { return r.n.Load() }

// Close flushes and closes the ground-truth file.
func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.w.Flush(); err != nil {
		r.f.Close()
		return fmt.Errorf("flush ground truth: %w", err)
	}
	return r.f.Close()
}

func (r *recorder) write(e *groundtruth.Exchange) {
	line, err := json.Marshal(e)
	if err != nil {
		panic(err) // plain struct of strings and ints: cannot fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w.Write(append(line, '\n'))
	r.w.Flush() // keep the file complete even if the server is killed
	r.n.Add(1)
}

// statusWriter remembers the status and body of responses not written through send.
type statusWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	s.body.Write(p)
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// teeBody records every request body byte the handler (or the drain below) reads.
type teeBody struct {
	io.ReadCloser
	buf bytes.Buffer
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	t.buf.Write(p[:n])
	return n, err
}

func (r *recorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		e := &groundtruth.Exchange{
			Seq:    int(r.seq.Add(1)),
			Client: req.RemoteAddr,
			Method: req.Method,
			Target: req.RequestURI,
			Path:   req.RequestURI,
			Case:   req.Header.Get("X-Lab-Case"),
		}
		if path, query, ok := strings.Cut(req.RequestURI, "?"); ok {
			e.Path, e.Query = path, query
		}
		x := &exchangeCtx{e: e}
		// Tee the body on a copy of the request: net/http inspects the original's Body
		// (an Expect: 100-continue reader) to decide whether the connection can be reused.
		inner := req.WithContext(withExchange(req.Context(), x))
		tee := &teeBody{ReadCloser: req.Body}
		inner.Body = tee
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, inner)
		if !x.sent { // a response net/http wrote itself (e.g. 405): record what went out
			e.Status = sw.status
			if e.Status == 0 {
				e.Status = http.StatusOK
			}
			e.SetRespBody(sw.body.Bytes())
			e.RespFraming = "length"
		}
		e.SetReqBody(tee.buf.Bytes())
		if x.reqGen != "" {
			e.ReqBodyGen = x.reqGen
		}
		r.write(e)
	})
}
