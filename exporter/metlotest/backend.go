// Package metlotest is an in-process Metlo collector for tests. It applies the rules of the
// real backend (metlo-labs/metlo, last commit August 2023: backend/src/collector.ts,
// services/log-request, utils getValidPath, the analyzer's method enum) so a sink is tested
// against what Metlo really does, and it injects the faults real deployments see.
//
// The rules, in the order the real service applies them to POST /api/v1/log-request/batch:
//   - a body over 2 MiB (express.json limit "2mb") is answered 413 before anything else;
//     a body that is not JSON, 400;
//   - the raw Authorization header must be a known key, else 401;
//   - the traces are then processed one by one, in order. For each: when the Redis trace
//     queue holds more than 1000 entries the trace is dropped silently; else a path that is
//     empty, lacks a leading '/', contains one of \ ? < > & = or has more than two empty
//     segments ends the request with 400 (traces before it are already queued, traces after
//     it are lost); a trace without method or with status 0 is skipped silently; the rest
//     are queued. An error while handling a trace ends the request with 500 the same way.
//   - the analyzer takes queued traces at its own pace; one whose method is not one of the
//     nine in its enum (GET HEAD POST PUT PATCH DELETE CONNECT OPTIONS TRACE) fails there
//     and is lost, although the POST was answered 200.
package metlotest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Trace is the part of a Metlo trace the backend reads.
type Trace struct {
	Request struct {
		URL struct {
			Host       string      `json:"host"`
			Path       any         `json:"path"`
			Parameters []NameValue `json:"parameters"`
		} `json:"url"`
		Headers []NameValue `json:"headers"`
		Body    string      `json:"body"`
		Method  string      `json:"method"`
	} `json:"request"`
	Response struct {
		Status  int         `json:"status"`
		Headers []NameValue `json:"headers"`
		Body    string      `json:"body"`
	} `json:"response"`
	Meta map[string]any `json:"meta"`
}

// NameValue is a header or parameter.
type NameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Path is request.url.path as a string ("" when missing or not a string).
func (t *Trace) Path() string { s, _ := t.Request.URL.Path.(string); return s }

// SourcePort is meta.sourcePort, which tests use to number traces.
func (t *Trace) SourcePort() int { f, _ := t.Meta["sourcePort"].(float64); return int(f) }

// Methods are the nine methods of the analyzer's enum.
var Methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}

const (
	// MaxBody is express.json's "2mb".
	MaxBody = 2 << 20
	// QueueLimit is the trace queue length past which traces are dropped silently.
	QueueLimit = 1000
)

// Stats count what became of the traces the backend received.
type Stats struct {
	Posts      int         // batch POSTs answered (any status)
	Statuses   map[int]int // answers by status
	Stored     int         // analyzed and kept
	Discarded  int         // answered 200, lost in the analyzer (unknown method)
	Skipped    int         // answered 200, dropped at once (no method, status 0)
	Overflowed int         // answered 200, dropped because the queue was over QueueLimit
	Refused    int         // the trace that made a batch answer 400
	Lost       int         // traces after a refused or failing one in the same batch
	InFlight   int         // batch POSTs being handled now
	MaxFlight  int         // the most handled at once
}

// Backend is the fake collector; configure it before serving.
type Backend struct {
	// Key is the API key it accepts.
	Key string
	// DrainRate is how many queued traces the analyzer takes per second; 0 keeps the queue empty.
	DrainRate float64
	// Fault, when set, answers the n-th batch POST (0-based) with a status before any
	// processing (0 = no fault), with an optional Retry-After value.
	Fault func(n int) (status int, retryAfter string)
	// Poison, when set, makes handling a trace fail with 500 (like an exception in the
	// real service): earlier traces of the batch are kept, later ones lost.
	Poison func(t *Trace) bool
	// Refuse, when set, makes the backend answer 400 at this trace, as it does for a path it
	// finds invalid (a rule the sink does not know about).
	Refuse func(t *Trace) bool
	// Delay, when set, is how long the n-th POST takes before it is handled.
	Delay func(n int) time.Duration
	// MaxBody overrides the body limit (a proxy in front with a smaller limit).
	MaxBody int

	mu        sync.Mutex
	down      bool
	received  int // batch POSTs received, numbering Fault and Delay
	st        Stats
	stored    []Trace
	queue     float64
	lastDrain time.Time
}

// New returns a healthy backend accepting key.
func New(key string) *Backend { return &Backend{Key: key, st: Stats{Statuses: map[int]int{}}} }

// SetDown makes the in-process client's connections fail (connection refused) while true.
func (b *Backend) SetDown(down bool) {
	b.mu.Lock()
	b.down = down
	b.mu.Unlock()
}

// Stats returns a copy of the counts.
func (b *Backend) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	st.Statuses = map[int]int{}
	for k, v := range b.st.Statuses {
		st.Statuses[k] = v
	}
	return st
}

// Stored returns the traces the analyzer kept, in the order they arrived.
func (b *Backend) Stored() []Trace {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Trace(nil), b.stored...)
}

func (b *Backend) answer(w http.ResponseWriter, status int, msg string) {
	b.mu.Lock()
	b.st.Posts++
	b.st.Statuses[status]++
	b.mu.Unlock()
	if status == http.StatusOK {
		w.WriteHeader(200)
		io.WriteString(w, "OK")
		return
	}
	http.Error(w, msg, status)
}

// ServeHTTP implements the collector's routes: GET /api/v1, GET /api/v1/verify and POST
// /api/v1/log-request/batch.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/api/v1" {
		io.WriteString(w, "OK")
		return
	}
	limit := b.MaxBody
	if limit == 0 {
		limit = MaxBody
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return
	}
	batch := r.Method == http.MethodPost && r.URL.Path == "/api/v1/log-request/batch"
	b.mu.Lock()
	n := b.received
	if batch {
		b.received++
		b.st.InFlight++
		b.st.MaxFlight = max(b.st.MaxFlight, b.st.InFlight)
	}
	b.mu.Unlock()
	if batch {
		defer func() {
			b.mu.Lock()
			b.st.InFlight--
			b.mu.Unlock()
		}()
	}
	if batch && b.Delay != nil {
		select {
		case <-time.After(b.Delay(n)):
		case <-r.Context().Done():
			return // the client gave up mid-request: nothing is processed
		}
	}
	if len(body) > limit {
		b.answer(w, http.StatusRequestEntityTooLarge, "request entity too large")
		return
	}
	var traces []json.RawMessage
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &traces); err != nil && batch {
			b.answer(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if r.Header.Get("Authorization") != b.Key {
		http.Error(w, "Client unauthorized", http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/verify":
		io.WriteString(w, "OK")
		return
	case !batch:
		http.NotFound(w, r)
		return
	}
	if b.Fault != nil {
		if code, ra := b.Fault(n); code != 0 {
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			b.answer(w, code, "injected fault")
			return
		}
	}
	for i, raw := range traces {
		status, msg := b.logRequest(raw)
		if status != 0 {
			b.mu.Lock()
			if status == http.StatusBadRequest {
				b.st.Refused++
			}
			b.st.Lost += len(traces) - i - 1
			b.mu.Unlock()
			b.answer(w, status, msg)
			return
		}
	}
	b.answer(w, http.StatusOK, "")
}

// logRequest is LogRequestService.logRequest for one trace: 0 when the request goes on.
func (b *Backend) logRequest(raw json.RawMessage) (int, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.DrainRate > 0 && !b.lastDrain.IsZero() {
		b.queue = max(0, b.queue-b.DrainRate*now.Sub(b.lastDrain).Seconds())
	}
	b.lastDrain = now
	if int(b.queue) > QueueLimit {
		b.st.Overflowed++
		return 0, ""
	}
	var t Trace
	if err := json.Unmarshal(raw, &t); err != nil {
		return http.StatusInternalServerError, "bad trace: " + err.Error()
	}
	if ok, why := ValidPath(t.Path()); !ok {
		return http.StatusBadRequest, fmt.Sprintf("Invalid path %s: %s", t.Path(), why)
	}
	if b.Refuse != nil && b.Refuse(&t) {
		return http.StatusBadRequest, "refused"
	}
	if t.Request.Method == "" || t.Response.Status == 0 {
		b.st.Skipped++
		return 0, ""
	}
	if b.Poison != nil && b.Poison(&t) {
		return http.StatusInternalServerError, "internal error"
	}
	if b.DrainRate > 0 {
		b.queue++
	}
	known := false
	for _, m := range Methods {
		known = known || m == t.Request.Method
	}
	if !known {
		b.st.Discarded++
		return 0, ""
	}
	b.st.Stored++
	b.stored = append(b.stored, t)
	return 0, ""
}

// ValidPath is getValidPath's verdict on a path.
func ValidPath(p string) (bool, string) {
	switch {
	case p == "":
		return false, "No path provided."
	case !strings.HasPrefix(p, "/"):
		return false, "Path does not start with a leading slash."
	case strings.ContainsAny(p, `\?<>&=`):
		return false, "Path contains an invalid character."
	case p == "/":
		return true, ""
	}
	empty := 0
	for _, tok := range strings.Split(p, "/") {
		if tok == "" {
			empty++
		}
	}
	if empty > 2 {
		return false, "Too many trailing or leading slashes in path."
	}
	return true, ""
}

// Client returns an HTTP client whose requests this backend answers in-process (no
// sockets, so tests can run inside a testing/synctest bubble). While SetDown(true) every
// request fails as a refused connection.
func (b *Backend) Client() *http.Client { return &http.Client{Transport: transport{b}} }

type transport struct{ b *Backend }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.b.mu.Lock()
	down := t.b.down
	t.b.mu.Unlock()
	if req.Body != nil {
		defer req.Body.Close()
	}
	if down {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
	}
	sreq := httptest.NewRequestWithContext(req.Context(), req.Method, req.URL.String(), bytes.NewReader(body))
	sreq.Header = req.Header.Clone()
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.b.ServeHTTP(rec, sreq)
	}()
	select {
	case <-done:
	case <-req.Context().Done():
		<-done
		return nil, context.Cause(req.Context())
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}
