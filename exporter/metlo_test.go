package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metlo-labs/metlo-appliance/exporter/metlotest"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

const (
	testKey = "metlo.0123456789abcdef0123456789abcdef01234567"
	// testURL is a private address literal: no DNS lookup, no plain-http warning.
	testURL = "http://10.9.8.7:8081"
)

var quietLog = slog.New(slog.DiscardHandler)

// testOpts are quick-retrying options against b's in-process client.
func testOpts(b *metlotest.Backend) MetloOptions {
	return MetloOptions{Key: testKey, Client: b.Client(), BatchInterval: 50 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
}

// defaultOpts are the options collect uses by default (pace included).
func defaultOpts(b *metlotest.Backend, spoolDir string) MetloOptions {
	return MetloOptions{Key: testKey, Client: b.Client(), SpoolDir: spoolDir, RateLimit: 60, RateBurst: 500, MaxLag: 5 * time.Minute}
}

func startSink(t *testing.T, o MetloOptions, m *Metrics, ready ReadySetter) *MetloSink {
	t.Helper()
	s, err := NewMetloSink(testURL, o, m, ready, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func closeWithin(t *testing.T, s Sink, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Close(ctx)
}

// putN puts traces numbered 1..n (by client port) into s.
func putN(s Sink, n int, mod func(i int, e *exchange.Exchange)) {
	enc := TraceEncoder{Environment: "production"}
	var buf []byte
	for i := 1; i <= n; i++ {
		e := numbered(i)
		if mod != nil {
			mod(i, e)
		}
		buf = enc.AppendTrace(buf[:0], e)
		s.Put(buf, traceInfo(e))
	}
}

// distinct counts the stored traces by number and reports the numbers missing from 1..n
// and how many arrived more than once.
func distinct(got []metlotest.Trace, n int) (missing []int, dups int) {
	seen := map[int]int{}
	for _, tr := range got {
		seen[tr.SourcePort()]++
	}
	for i := 1; i <= n; i++ {
		switch c := seen[i]; {
		case c == 0:
			missing = append(missing, i)
		case c > 1:
			dups += c - 1
		}
	}
	return missing, dups
}

func outcome(m *Metrics, s Sink, o string) int {
	return int(testutil.ToFloat64(m.traces.WithLabelValues(s.Name(), o)))
}

func TestMetloBatchesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		m := NewMetrics("t")
		o := testOpts(b)
		o.BatchTraces, o.MaxInFlight = 100, 1
		s := startSink(t, o, m, nil)
		putN(s, 1050, nil)
		if err := closeWithin(t, s, time.Minute); err != nil {
			t.Fatal(err)
		}
		got := b.Stored()
		for i, tr := range got {
			if tr.SourcePort() != i+1 {
				t.Fatalf("trace %d is number %d: order lost", i, tr.SourcePort())
			}
		}
		if st := b.Stats(); len(got) != 1050 || st.Posts < 11 {
			t.Fatalf("%d traces in %d posts", len(got), st.Posts)
		}
		if outcome(m, s, OutcomeSent) != 1050 {
			t.Fatal("sent counter")
		}
	})
}

func TestMetloBatchClosesAfterInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		o := testOpts(b)
		o.BatchInterval = 300 * time.Millisecond
		s := startSink(t, o, nil, nil)
		defer closeWithin(t, s, time.Second)
		putN(s, 5, nil)
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if n := len(b.Stored()); n != 0 {
			t.Fatalf("%d traces sent before the batch interval", n)
		}
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		if st := b.Stats(); st.Stored != 5 || st.Posts != 1 {
			t.Fatalf("%+v: want 5 traces in one batch after the interval", st)
		}
	})
}

func TestMetloRejectedKeyIsFatal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		o := testOpts(b)
		o.Key = "metlo.wrong"
		s, _ := NewMetloSink(testURL, o, nil, nil, quietLog)
		if err := s.Start(context.Background()); !errors.Is(err, ErrKeyRejected) || !strings.Contains(err.Error(), "401") {
			t.Fatalf("Start = %v, want ErrKeyRejected naming HTTP 401", err)
		}
		_, err := New(context.Background(), Options{Encoders: 1, Sinks: []string{"metlo:" + testURL}, Metlo: o, Logger: quietLog})
		if !errors.Is(err, ErrKeyRejected) {
			t.Fatalf("exporter.New = %v, want ErrKeyRejected", err)
		}
	})
}

// Row "every trace rejected (413 always)" and a proxy with a smaller limit: batches are
// split once, the limit is remembered, and what can never fit is counted, not hidden.
// Row "one trace the backend answers 400 (a batch of 1000)": the rest are delivered, only
// that trace is dropped.
// Row "one trace the backend always answers 500": the pipeline is not stuck; the trace is
// dropped once the backend has shown it is up, the rest are delivered.
// A backend that is down answers 500 to everything: nothing may be dropped as "poison".
// Row "backend down 30 s or 120 s during an offline run": nothing is lost, all arrive once.
// Row "live, backend down, then the service is restarted": what was spooled is delivered
// by the next run, after a clean stop and after a crash.
// Row "SIGTERM with traces queued": the batches in flight are counted too.
// Traces the real backend answers 200 and then throws away are counted, not "sent".
func TestMetloSkipsWhatMetloDiscards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		m := NewMetrics("t")
		s := startSink(t, testOpts(b), m, nil)
		putN(s, 30, func(i int, e *exchange.Exchange) {
			switch i % 3 {
			case 1:
				e.Response = exchange.Response{} // no response seen
			case 2:
				e.Request.Method = "PROPFIND"
			}
		})
		closeWithin(t, s, time.Minute)
		st := b.Stats()
		if st.Stored != 10 || st.Skipped != 0 || st.Discarded != 0 {
			t.Fatalf("backend %+v: want only the 10 storable traces sent", st)
		}
		if outcome(m, s, OutcomeSkippedNoResponse) != 10 || outcome(m, s, OutcomeSkippedMethod) != 10 || outcome(m, s, OutcomeSent) != 10 {
			t.Fatal("skips not counted")
		}
	})
}

// The default pace keeps a burst within what one Metlo instance drains; unpaced, the
// backend's queue overflows and drops most of it while answering 200.
func TestMetloDefaultPaceKeepsBackendQueue(t *testing.T) {
	run := func(t *testing.T, o MetloOptions, b *metlotest.Backend) metlotest.Stats {
		s := startSink(t, o, nil, nil)
		putN(s, 5000, nil)
		closeWithin(t, s, 30*time.Minute)
		return b.Stats()
	}
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		b.DrainRate = 75
		st := run(t, defaultOpts(b, ""), b)
		if st.Overflowed != 0 || st.Stored != 5000 {
			t.Fatalf("paced: %+v", st)
		}
		b2 := metlotest.New(testKey)
		b2.DrainRate = 75
		o := defaultOpts(b2, "")
		o.RateLimit = 0
		st2 := run(t, o, b2)
		if st2.Overflowed < 3000 {
			t.Fatalf("unpaced: %+v: the fake backend should lose most of the burst", st2)
		}
		t.Logf("unpaced burst of 5000: backend kept %d, dropped %d while answering 200", st2.Stored, st2.Overflowed)
	})
}

// Under a cap, repeats go first: every endpoint seen reaches Metlo.
func TestMetloShedsRepeatsBeforeNovelty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		m := NewMetrics("t")
		o := defaultOpts(b, t.TempDir())
		o.RateLimit, o.RateBurst, o.MaxLag = 20, 100, 10*time.Second
		s := startSink(t, o, m, nil)
		putN(s, 3000, func(i int, e *exchange.Exchange) {
			if i%100 == 0 { // 30 distinct endpoints among 2970 calls of one
				e.Request.Path = fmt.Sprintf("/api/endpoint%c/list", 'A'+rune(i/100))
			}
		})
		closeWithin(t, s, 30*time.Minute)
		endpoints := map[string]bool{}
		for _, tr := range b.Stored() {
			endpoints[tr.Path()] = true
		}
		shed := outcome(m, s, OutcomeShedRepeat)
		if len(endpoints) != 31 || shed == 0 {
			t.Fatalf("%d endpoints reached the backend (want 31), %d shed", len(endpoints), shed)
		}
		if sent := outcome(m, s, OutcomeSent); sent+shed != 3000 {
			t.Fatalf("sent %d + shed %d != 3000", sent, shed)
		}
	})
}

func TestMetloRetryAfterAndTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		var times []time.Time
		var mu sync.Mutex
		b.Fault = func(n int) (int, string) {
			switch n {
			case 0:
				return 503, "30"
			case 1:
				return 429, "3600" // bounded by MaxRetryAfter
			}
			return 0, ""
		}
		b.Delay = func(n int) time.Duration {
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
			if n == 2 {
				return time.Hour // past the request timeout
			}
			return 0
		}
		o := testOpts(b)
		o.RequestTimeout, o.MaxRetryAfter = 5*time.Second, time.Minute
		s := startSink(t, o, nil, nil)
		putN(s, 10, nil)
		closeWithin(t, s, 10*time.Minute)
		if len(times) < 4 || b.Stats().Stored != 10 {
			t.Fatalf("%d attempts, %d stored", len(times), b.Stats().Stored)
		}
		if d := times[1].Sub(times[0]); d < 30*time.Second {
			t.Errorf("retried %v after Retry-After: 30", d)
		}
		if d := times[2].Sub(times[1]); d < time.Minute || d > time.Minute+time.Second {
			t.Errorf("retried %v after Retry-After: 3600, want the 1m bound", d)
		}
		if d := times[3].Sub(times[2]); d < 5*time.Second || d > 6*time.Second {
			t.Errorf("a hanging POST was retried after %v, want the 5s timeout", d)
		}
	})
}

func TestMetloSeveralPostsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		b.Delay = func(int) time.Duration { return time.Second }
		o := testOpts(b)
		o.MaxInFlight, o.BatchTraces = 4, 10
		s := startSink(t, o, nil, nil)
		start := time.Now()
		putN(s, 200, nil)
		closeWithin(t, s, time.Minute)
		if st := b.Stats(); st.MaxFlight != 4 || st.Stored != 200 {
			t.Fatalf("%+v: want 4 POSTs at once", st)
		}
		if d := time.Since(start); d > 6*time.Second {
			t.Fatalf("20 one-second POSTs took %v with 4 in flight", d)
		}
	})
}

// Readiness follows the backlog's fill level, not retries.
func TestMetloReadiness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		b.SetDown(true)
		h := NewHealth()
		o := testOpts(b)
		o.SpoolDir, o.SpoolMaxBytes = t.TempDir(), 4<<20
		s := startSink(t, o, nil, h)
		putN(s, 100, nil)
		time.Sleep(3 * time.Second) // retries happen
		if ok, why := h.Ready(); !ok {
			t.Fatalf("not ready while retrying with an empty spool: %s", why)
		}
		putN(s, 6000, nil) // ~3.6 MB: past 80% of 4 MiB
		time.Sleep(2 * time.Second)
		if ok, _ := h.Ready(); ok {
			t.Fatalf("ready with the spool %.0f%% full", s.q.Fill()*100)
		}
		b.SetDown(false)
		time.Sleep(time.Minute)
		if ok, why := h.Ready(); !ok {
			t.Fatalf("still not ready after draining: %s", why)
		}
		closeWithin(t, s, time.Minute)
	})
}

func TestMetloURLValidationAndMasking(t *testing.T) {
	for _, u := range []string{"backend:8081", "ftp://x", "http://", "::"} {
		if _, err := NewMetloSink(u, MetloOptions{}, nil, nil, quietLog); err == nil {
			t.Errorf("NewMetloSink(%q) succeeded", u)
		}
	}
	for _, bad := range []string{"ftp://user:s3cret@x", "user:s3cret@x:8081", "user:s3cret@x/api", "http://user:s3cret@x:port"} {
		_, err := NewMetloSink(bad, MetloOptions{}, nil, nil, quietLog)
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "****@x") {
			t.Errorf("NewMetloSink(%q): error leaks the password or hides the host: %v", bad, err)
		}
	}
	var logs strings.Builder
	s, err := NewMetloSink("http://user:pw@metlo.internal:8081/", MetloOptions{}, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || s.Name() != "metlo:http://metlo.internal:8081" || strings.Contains(logs.String(), "pw@") {
		t.Fatalf("name = %q, %v, logs %q; want credentials stripped", s.Name(), err, logs.String())
	}
	for in, want := range map[string]string{
		"metlo:https://u:p@h:1/x": "metlo:https://****@h:1/x", "http://tok@h": "http://****@h",
		"http://h/a@b": "http://h/a@b", "jsonl:-": "jsonl:-", "h:8081": "h:8081",
	} {
		if got := MaskURL(in); got != want {
			t.Errorf("MaskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMetloWarnsAboutPlainHTTP(t *testing.T) {
	for url, warn := range map[string]bool{"http://203.0.113.9:8081": true, "http://10.1.2.3:8081": false,
		"http://127.0.0.1:8081": false, "https://203.0.113.9": false} {
		b := metlotest.New(testKey)
		var logs strings.Builder
		s, _ := NewMetloSink(url, testOpts(b), nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		closeWithin(t, s, time.Second)
		if got := strings.Contains(logs.String(), "unencrypted"); got != warn {
			t.Errorf("%s: warned=%v, want %v\n%s", url, got, warn, logs.String())
		}
	}
}

// Against a real HTTP server over loopback (the rest run in-process): the same client path
// a deployment uses.
func TestMetloOverRealHTTP(t *testing.T) {
	b := metlotest.New(testKey)
	srv := httptest.NewServer(b)
	defer srv.Close()
	s, err := NewMetloSink(srv.URL, MetloOptions{Key: testKey, BatchInterval: 10 * time.Millisecond}, nil, nil, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	putN(s, 2000, nil)
	if err := closeWithin(t, s, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if missing, _ := distinct(b.Stored(), 2000); len(missing) != 0 {
		t.Fatalf("missing %d", len(missing))
	}
	_ = http.StatusOK
}

func TestMetloOversizedTraceIsTrimmedNotDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		m := NewMetrics("t")
		x, err := New(context.Background(), Options{Encoders: 1, Sinks: []string{"metlo:" + testURL}, Metlo: testOpts(b), Metrics: m, Logger: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		big := numbered(1)
		big.Response.Body = bytes.Repeat([]byte("\x00"), 3<<20) // 18 MB once escaped
		x.Submit(big)
		x.Submit(numbered(2))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := x.Close(ctx); err != nil {
			t.Fatal(err)
		}
		got := b.Stored()
		if len(got) != 2 || got[0].Meta["trimmed"] != true || got[0].Meta["responseBodyTruncated"] != true || got[1].Meta["trimmed"] != nil {
			t.Fatalf("got %d traces, want the big one trimmed and flagged, then the small one", len(got))
		}
		if testutil.ToFloat64(m.trimmed.WithLabelValues(queueSink)) != 1 {
			t.Fatal("trim not counted")
		}
		if eps := x.BackendEndpoints(); len(eps) != 1 || eps[0].String() != strings.TrimPrefix(testURL, "http://") {
			t.Fatalf("BackendEndpoints = %v", eps)
		}
	})
}

// Paths Metlo would refuse arrive rewritten (and counted), so the trace is kept.
func TestMetloPathsAreMadeAcceptable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		m := NewMetrics("t")
		x, err := New(context.Background(), Options{Encoders: 1, Sinks: []string{"metlo:" + testURL}, Metlo: testOpts(b), Metrics: m, Logger: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		paths := []string{"/search/a&b=c", `/files\x`, "", "*", "/a//b//c", "/ok/path"}
		for i, p := range paths {
			e := numbered(i + 1)
			e.Request.Path = p
			x.Submit(e)
		}
		x.Close(context.Background())
		got := b.Stored()
		if len(got) != len(paths) || b.Stats().Refused != 0 {
			t.Fatalf("%d of %d stored, %d refused", len(got), len(paths), b.Stats().Refused)
		}
		for _, tr := range got {
			if ok, why := metlotest.ValidPath(tr.Path()); !ok {
				t.Errorf("path %q sent: %s", tr.Path(), why)
			}
		}
		if n := testutil.ToFloat64(m.rewritten.WithLabelValues(RewriteReserved)); n != 2 {
			t.Errorf("reserved_char rewrites = %v", n)
		}
	})
}

// copyDir snapshots a spool directory as a crash would leave it.
func copyDir(t *testing.T, from string) string {
	to := t.TempDir()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o750)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// With the backend down, the start-up warning says where the traces wait: in the spool, or
// in memory when there is none (it said "spooling" for both).
func TestMetloUnreachableSaysWhereTracesWait(t *testing.T) {
	for _, c := range []struct{ spool, want string }{{"", "holding traces in memory"}, {t.TempDir(), "spooling traces"}} {
		var logs strings.Builder
		s, err := NewMetloSink("http://127.0.0.1:1", MetloOptions{Key: testKey, SpoolDir: c.spool}, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		s.Close(ctx)
		cancel()
		if !strings.Contains(logs.String(), "metlo backend unreachable; "+c.want+" and retrying") {
			t.Errorf("spool-dir %q: want %q in the logs:\n%s", c.spool, c.want, logs.String())
		}
	}
}
