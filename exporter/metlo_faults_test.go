package exporter

// The rows of issue 13's table, each against the fake collector that applies the real
// backend's rules (package metlotest), on testing/synctest's clock.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metlo-labs/metlo-appliance/exporter/metlotest"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

func TestMetlo413(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		b.MaxBody = 20_000 // far below what the sink assumes: the 413s teach it
		m := NewMetrics("t")
		o := testOpts(b)
		o.BatchTraces, o.MaxInFlight = 200, 1
		s := startSink(t, o, m, nil)
		putN(s, 2000, nil)
		if err := closeWithin(t, s, time.Minute); err != nil {
			t.Fatal(err)
		}
		st := b.Stats()
		if missing, dups := distinct(b.Stored(), 2000); len(missing) > 0 || dups > 0 {
			t.Fatalf("missing %d, duplicates %d", len(missing), dups)
		}
		if st.Statuses[413] > 6 { // a few halvings find the 20 KB limit, not one 413 per batch
			t.Fatalf("%d answers 413 for 2000 traces: the limit was not remembered", st.Statuses[413])
		}
		if lim := testutil.ToFloat64(m.batchLimit.WithLabelValues(s.Name())); lim > 20_000 {
			t.Fatalf("batch limit %v after 413s at 20000", lim)
		}

		// 413 always: nothing fits; every trace is counted as too large.
		b2 := metlotest.New(testKey)
		b2.MaxBody = 100
		s2 := startSink(t, testOpts(b2), m, nil)
		putN(s2, 50, nil)
		closeWithin(t, s2, time.Minute)
		if got := outcome(m, s2, OutcomeDroppedTooLarge); got != 50 || b2.Stats().Stored != 0 {
			t.Fatalf("dropped_too_large = %d, want 50", got)
		}
		sum := s2.summary()
		if sum.Lost() != 50 || sum.Pending != 0 {
			t.Fatalf("summary %+v: want all 50 lost", sum)
		}
	})
}

func TestMetloOneRefusedTraceCostsOneTrace(t *testing.T) {
	for _, c := range []struct {
		name string
		path bool // refused by Metlo's own path rule (its answer names the path)
	}{{"unknown rule (bisect)", false}, {"invalid path (named in the answer)", true}} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := metlotest.New(testKey)
				const bad = 500
				if !c.path {
					b.Refuse = func(tr *metlotest.Trace) bool { return tr.SourcePort() == bad }
				}
				m := NewMetrics("t")
				o := testOpts(b)
				o.BatchTraces, o.MaxInFlight = 1000, 1
				s := startSink(t, o, m, nil)
				enc := TraceEncoder{}
				for i := 1; i <= 1000; i++ {
					tr := enc.AppendTrace(nil, numbered(i))
					if c.path && i == bad {
						// A path Metlo refuses; the encoder never writes one, a future rule might.
						tr = []byte(strings.Replace(string(tr), `"path":"/api/users/7"`, `"path":"/a=b"`, 1))
					}
					s.Put(tr, traceInfo(numbered(i)))
				}
				if err := closeWithin(t, s, time.Minute); err != nil {
					t.Fatal(err)
				}
				missing, dups := distinct(b.Stored(), 1000)
				if len(missing) != 1 || missing[0] != bad {
					t.Fatalf("missing %v, want only %d", missing, bad)
				}
				if outcome(m, s, OutcomeDroppedRejected) != 1 || outcome(m, s, OutcomeSent) != 999 {
					t.Fatalf("rejected %d sent %d", outcome(m, s, OutcomeDroppedRejected), outcome(m, s, OutcomeSent))
				}
				if c.path && dups != 0 {
					t.Fatalf("%d duplicates although the answer named the path", dups)
				}
				t.Logf("%d posts, %d traces stored twice", b.Stats().Posts, dups)
			})
		})
	}
}

func TestMetloPoisonTraceDoesNotStallDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		const poison = 123
		b.Poison = func(tr *metlotest.Trace) bool { return tr.SourcePort() == poison }
		m := NewMetrics("t")
		o := testOpts(b)
		o.BatchTraces, o.MaxInFlight = 500, 1
		s := startSink(t, o, m, nil)
		start := time.Now()
		putN(s, 1000, nil)
		if err := closeWithin(t, s, 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Minute {
			t.Fatalf("took %v to get past one bad trace", d)
		}
		missing, _ := distinct(b.Stored(), 1000)
		if len(missing) != 1 || missing[0] != poison || outcome(m, s, OutcomeDroppedServerErr) != 1 {
			t.Fatalf("missing %v, dropped_server_error %d", missing, outcome(m, s, OutcomeDroppedServerErr))
		}
	})
}

func TestMetloBackendDownIsNotPoison(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		var mu sync.Mutex
		down := true
		b.Fault = func(int) (int, string) {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return 500, ""
			}
			return 0, ""
		}
		o := testOpts(b)
		o.MaxBackoff = 2 * time.Second
		m := NewMetrics("t")
		s := startSink(t, o, m, nil)
		putN(s, 300, nil)
		time.Sleep(2 * time.Minute)
		mu.Lock()
		down = false
		mu.Unlock()
		if err := closeWithin(t, s, time.Minute); err != nil {
			t.Fatal(err)
		}
		if missing, _ := distinct(b.Stored(), 300); len(missing) != 0 {
			t.Fatalf("missing %d after the outage", len(missing))
		}
	})
}

func TestMetloOfflineRunOutlivesBackendOutage(t *testing.T) {
	for _, outage := range []time.Duration{30 * time.Second, 120 * time.Second} {
		t.Run(outage.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := metlotest.New(testKey)
				b.DrainRate = 75
				b.SetDown(true)
				m := NewMetrics("t")
				o := defaultOpts(b, t.TempDir())
				o.MaxLag = 0 // offline runs never shed
				x, err := New(context.Background(), Options{Sinks: []string{"metlo:" + testURL}, Block: true, Metlo: o, Metrics: m, Logger: quietLog})
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					time.Sleep(outage)
					b.SetDown(false)
				}()
				for i := 1; i <= 10000; i++ {
					x.Submit(numbered(i))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // offline-flush-timeout
				defer cancel()
				if err := x.Close(ctx); err != nil {
					t.Fatal(err)
				}
				missing, dups := distinct(b.Stored(), 10000)
				if len(missing) != 0 || dups != 0 || b.Stats().Overflowed != 0 {
					t.Fatalf("missing %d, duplicates %d, dropped by the backend's queue %d", len(missing), dups, b.Stats().Overflowed)
				}
				for _, sum := range x.Summary() {
					if sum.Lost() != 0 || sum.Pending != 0 {
						t.Fatalf("summary %+v", sum)
					}
				}
			})
		})
	}
}

func TestMetloSpoolSurvivesRestart(t *testing.T) {
	t.Run("clean stop", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			dir := t.TempDir()
			b := metlotest.New(testKey)
			b.SetDown(true)
			m := NewMetrics("t")
			s := startSink(t, defaultOpts(b, dir), m, nil)
			putN(s, 5000, nil)
			if err := closeWithin(t, s, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			if sum := s.summary(); sum.Pending != 5000 || sum.Lost() != 0 {
				t.Fatalf("first run: %+v, want 5000 spooled", sum)
			}
			b.SetDown(false)
			s2 := startSink(t, defaultOpts(b, dir), m, nil)
			if err := closeWithin(t, s2, 10*time.Minute); err != nil {
				t.Fatal(err)
			}
			if missing, dups := distinct(b.Stored(), 5000); len(missing) != 0 || dups != 0 {
				t.Fatalf("missing %d, duplicates %d", len(missing), dups)
			}
			if sum := s2.summary(); sum.Replayed != 5000 || sum.Outcomes[OutcomeSent] != 5000 || sum.Pending != 0 {
				t.Fatalf("second run: %+v", sum)
			}
		})
	})
	t.Run("crash", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			dir := t.TempDir()
			b := metlotest.New(testKey)
			b.SetDown(true)
			s := startSink(t, defaultOpts(b, dir), nil, nil)
			putN(s, 3000, nil)
			time.Sleep(time.Second) // the spool writes within its flush interval
			synctest.Wait()
			crashed := copyDir(t, dir) // the files as a killed process leaves them
			closeWithin(t, s, time.Second)
			b.SetDown(false)
			s2 := startSink(t, defaultOpts(b, crashed), nil, nil)
			closeWithin(t, s2, 10*time.Minute)
			if missing, _ := distinct(b.Stored(), 3000); len(missing) != 0 {
				t.Fatalf("missing %d after the crash", len(missing))
			}
		})
	})
}

func TestMetloShutdownAccountingIsExact(t *testing.T) {
	for _, spooled := range []bool{false, true} {
		t.Run(fmt.Sprint("spool=", spooled), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := metlotest.New(testKey)
				b.Delay = func(int) time.Duration { return time.Hour } // every POST hangs
				m := NewMetrics("t")
				o := testOpts(b)
				o.MaxInFlight, o.BatchTraces, o.RequestTimeout = 2, 100, time.Hour
				if spooled {
					o.SpoolDir = t.TempDir()
				}
				s := startSink(t, o, m, nil)
				putN(s, 3000, nil)
				time.Sleep(time.Second) // two batches are in flight
				synctest.Wait()
				err := closeWithin(t, s, 5*time.Second)
				sum := s.summary()
				if !spooled {
					if err == nil || !strings.Contains(err.Error(), "3000 traces undelivered") || outcome(m, s, OutcomeDroppedShutdown) != 3000 {
						t.Fatalf("Close = %v, dropped_shutdown %d: want all 3000 counted", err, outcome(m, s, OutcomeDroppedShutdown))
					}
					return
				}
				if err != nil || sum.Pending != 3000 || sum.Lost() != 0 {
					t.Fatalf("Close = %v, summary %+v: want 3000 spooled, none lost", err, sum)
				}
			})
		})
	}
}

// The spool's cap: past 90% full, repeats are shed at intake and new endpoints still get in.
func TestMetloFullSpoolShedsRepeatsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := metlotest.New(testKey)
		b.SetDown(true)
		m := NewMetrics("t")
		o := testOpts(b)
		o.SpoolDir, o.SpoolMaxBytes = t.TempDir(), 2<<20
		s := startSink(t, o, m, nil)
		putN(s, 3000, nil)          // ~2 MB of one endpoint: past 90% (the oldest are dropped at 100%)
		time.Sleep(2 * time.Second) // the fill level is refreshed every second
		if f := s.q.Fill(); f < 0.9 {
			t.Fatalf("spool only %.0f%% full", f*100)
		}
		before := outcome(m, s, OutcomeShedRepeat) // the monitor may have seen 90% during the first batch already
		putN(s, 100, nil)
		putN(s, 1, func(_ int, e *exchange.Exchange) { e.Request.Path = "/api/brand-new" })
		if shed := outcome(m, s, OutcomeShedRepeat) - before; shed != 100 {
			t.Fatalf("shed_repeat rose by %d, want the 100 repeats", shed)
		}
		b.SetDown(false)
		closeWithin(t, s, 30*time.Minute)
		found := false
		for _, tr := range b.Stored() {
			found = found || tr.Path() == "/api/brand-new"
		}
		if !found {
			t.Fatal("the new endpoint did not reach the backend")
		}
		sum := s.summary()
		if got := sum.Outcomes[OutcomeSent] + sum.Lost(); got != 3101 {
			t.Fatalf("sent + lost = %d, want 3101 (%+v)", got, sum.Outcomes)
		}
	})
}
