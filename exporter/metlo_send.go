package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metlo-labs/metlo-appliance/exporter/spool"
)

// run is the sender: verify the key, then read batches from the backlog in order, shed
// repeats when far behind, pace, and hand each batch to a delivery goroutine (at most
// MaxInFlight at once) until closed and empty or the close deadline passes.
func (s *MetloSink) run() {
	defer close(s.done)
	for attempt := 0; !s.verified.Load(); attempt++ {
		if !s.sleep(s.backoff(attempt, 0)) {
			return
		}
		switch err := s.verify(s.ctx); {
		case err == nil:
			s.verified.Store(true)
			s.log.Info("metlo backend reachable; sending traces", "sink", s.name)
		case errors.Is(err, ErrKeyRejected):
			s.logEvery("verify", "metlo backend rejects the API key; retrying", "err", err)
		}
	}
	slots := make(chan struct{}, s.opts.MaxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	closing := false
	closingCh := s.closing // nil once seen closed, so the select below does not spin
	for {
		if s.ctx.Err() != nil {
			return
		}
		if s.q.Stats().Unread == 0 {
			if closing && len(slots) == 0 {
				return
			}
			select {
			case <-closingCh:
				closing, closingCh = true, nil
			case <-s.ctx.Done():
			case <-s.q.Notify():
			case <-s.wake:
			}
			continue
		}
		if !closing && s.waitForBatch() {
			closing, closingCh = true, nil
		}
		limit := int(s.bodyLimit.Load())
		n := s.opts.BatchTraces
		if s.limiter != nil {
			n = min(n, s.opts.RateBurst)
		}
		recs, err := s.q.Next(n, max(limit-2-n, 1))
		if err != nil {
			return
		}
		recs = s.shed(recs)
		if len(recs) == 0 {
			continue
		}
		if s.limiter != nil {
			if err := s.limiter.WaitN(s.ctx, len(recs)); err != nil {
				return // the close deadline passed: the batch stays in the backlog
			}
		}
		select {
		case slots <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.deliver(recs)
			<-slots
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}()
	}
}

// waitForBatch returns once a full batch is waiting, the batch interval has passed, or the
// sink is closing (then it reports true).
func (s *MetloSink) waitForBatch() bool {
	timer := time.NewTimer(s.opts.BatchInterval)
	defer timer.Stop()
	for {
		st := s.q.Stats()
		if st.Unread >= int64(s.opts.BatchTraces) || st.Bytes >= s.bodyLimit.Load() {
			return false
		}
		select {
		case <-timer.C:
			return false
		case <-s.closing:
			return true
		case <-s.ctx.Done():
			return false
		case <-s.q.Notify():
		}
	}
}

// shed drops repeats from recs when the backlog would take longer than MaxLag to send at
// the pace: traces of endpoints sent within RecentWindow give way, new endpoints go.
func (s *MetloSink) shed(recs []spool.Record) []spool.Record {
	now := time.Now()
	behind := false
	if s.opts.MaxLag > 0 && s.opts.RateLimit > 0 {
		lag := time.Duration(float64(s.q.Stats().Records) / s.opts.RateLimit * float64(time.Second))
		behind = lag > s.opts.MaxLag
	}
	keep := recs[:0]
	var shed []spool.Record
	for _, r := range recs {
		if s.sent.seen(r.Key, now) && behind {
			shed = append(shed, r)
			continue
		}
		keep = append(keep, r)
	}
	if len(shed) > 0 {
		s.q.Ack(shed)
		s.counts.add(OutcomeShedRepeat, len(shed))
		s.logEvery("shed-lag", "metlo sink far behind its pace; shedding traces of endpoints sent recently",
			"max_lag", s.opts.MaxLag, "rate_limit", s.opts.RateLimit)
	}
	return keep
}

// deliver sends one batch until every trace in it is delivered or given up, or the close
// deadline passes. Traces that fail again and again while no other trace gets through are
// not judged: they are retried as one batch until the backend stores something else.
func (s *MetloSink) deliver(recs []spool.Record) {
	undecided, ok, since := s.send(recs, true, time.Time{})
	for ok && len(undecided) > 0 {
		undecided, ok, since = s.send(undecided, false, since)
	}
}

// send delivers recs, acknowledging each trace once it is accepted or given up. It returns
// the single traces it could not judge (see deliver), false when the close deadline passed
// (what is unacknowledged stays in the backlog), and when the failures began.
func (s *MetloSink) send(recs []spool.Record, mayBisect bool, since time.Time) ([]spool.Record, bool, time.Time) {
	failures := 0
	for attempt := 0; ; attempt++ {
		res := s.post(recs)
		switch {
		case res.err == nil && res.status/100 == 2:
			s.q.Ack(recs)
			s.counts.add(OutcomeSent, len(recs))
			s.results["ok"].Inc()
			s.lastOK.Store(time.Now().UnixNano())
			return nil, true, since
		case res.err == nil && res.status == http.StatusRequestEntityTooLarge:
			if len(recs) == 1 {
				s.logEvery("413", "metlo backend refused a single trace as too large; dropped", "bytes", len(recs[0].Data))
				s.q.Ack(recs)
				s.counts.add(OutcomeDroppedTooLarge, 1)
				s.results["rejected"].Inc()
				return nil, true, since
			}
			s.results["split"].Inc()
			s.learnLimit(res.bodySize)
			return s.sendSplit(recs, since)
		case res.err == nil && (res.status == http.StatusBadRequest || res.status == http.StatusUnprocessableEntity):
			return s.refused(recs, res, since)
		case res.err == nil && res.status >= 500:
			failures++
			if since.IsZero() {
				since = time.Now()
			}
			if failures%s.opts.PersistentFailures == 0 && s.verify(s.ctx) == nil {
				// The backend is up and answers its key check, yet this batch keeps failing.
				othersPass := s.lastOK.Load() > since.UnixNano()
				switch {
				case len(recs) == 1 && othersPass:
					s.logEvery("poison", "metlo backend fails on one trace every time while storing others; dropped",
						"status", res.status, "answer", res.answer, "trace_sample", sample(recs[0].Data))
					s.q.Ack(recs) // after the sample: acknowledged data is reused
					s.counts.add(OutcomeDroppedServerErr, 1)
					s.results["rejected"].Inc()
					return nil, true, since
				case len(recs) == 1 && mayBisect:
					return recs, true, since // judged once other traces have got through
				case len(recs) > 1 && (mayBisect || othersPass):
					s.results["bisect"].Inc()
					return s.bisect(recs, since)
				}
			}
			s.logEvery("post-status", "metlo backend error; retrying", "status", res.status, "answer", res.answer)
		case res.err == nil && (res.status == http.StatusUnauthorized || res.status == http.StatusForbidden):
			s.logEvery("post-auth", "metlo backend rejects the API key; retrying (traces wait in the backlog)", "status", res.status)
		case res.err == nil && res.status != http.StatusRequestTimeout && res.status != http.StatusTooManyRequests:
			s.logEvery("post-4xx", "metlo backend refuses batches; check the sink URL (traces wait in the backlog)", "status", res.status, "answer", res.answer)
		case res.err != nil:
			if s.ctx.Err() != nil {
				return nil, false, since
			}
			s.logEvery("post-err", "sending to metlo backend failed; retrying", "err", res.err)
		}
		s.results["retry"].Inc()
		if !s.sleep(s.backoff(attempt, res.retryAfter)) {
			return nil, false, since
		}
	}
}

// refused handles a 400/422. Metlo stores the traces before the one it refuses and loses
// the rest; its answer "Invalid path P: …" names the path, so when one trace in order has
// that path, the ones before it count as sent, it is dropped, and the rest go again — no
// duplicates. Otherwise the batch is bisected down to the trace at fault (traces the
// backend stored before refusing may then be stored twice).
func (s *MetloSink) refused(recs []spool.Record, res postResult, since time.Time) ([]spool.Record, bool, time.Time) {
	k := refusedIndex(recs, res.answer)
	if len(recs) == 1 || k >= 0 {
		if k < 0 {
			k = 0
		}
		s.logEvery("rejected", "metlo backend refused a trace; dropped it alone", "status", res.status,
			"answer", res.answer, "trace_sample", sample(recs[k].Data))
		s.q.Ack(recs[:k+1]) // after the sample: acknowledged data is reused
		s.counts.add(OutcomeSent, k)
		s.counts.add(OutcomeDroppedRejected, 1)
		s.results["rejected"].Inc()
		if k+1 == len(recs) {
			return nil, true, since
		}
		return s.send(recs[k+1:], true, since)
	}
	s.results["bisect"].Inc()
	return s.bisect(recs, since)
}

// refusedIndex finds the first trace whose path the backend's "Invalid path" answer names.
func refusedIndex(recs []spool.Record, answer string) int {
	const prefix = "Invalid path "
	if !strings.HasPrefix(answer, prefix) {
		return -1
	}
	for i, r := range recs {
		var t struct {
			Request struct {
				URL struct {
					Path string `json:"path"`
				} `json:"url"`
			} `json:"request"`
		}
		if json.Unmarshal(r.Data, &t) == nil && strings.HasPrefix(answer, prefix+t.Request.URL.Path+": ") {
			return i
		}
	}
	return -1
}

func (s *MetloSink) bisect(recs []spool.Record, since time.Time) ([]spool.Record, bool, time.Time) {
	half := len(recs) / 2
	u1, ok, since := s.send(recs[:half], true, since)
	if !ok {
		return nil, false, since
	}
	u2, ok, since := s.send(recs[half:], true, since)
	return append(u1, u2...), ok, since
}

// sendSplit re-sends recs in pieces under the (just lowered) body limit.
func (s *MetloSink) sendSplit(recs []spool.Record, since time.Time) ([]spool.Record, bool, time.Time) {
	var undecided []spool.Record
	for len(recs) > 0 {
		limit := int(s.bodyLimit.Load()) // lowered meanwhile by a 413 deeper down
		n, size := 0, 2
		for n < len(recs) && (n == 0 || size+1+len(recs[n].Data) <= limit) {
			size += 1 + len(recs[n].Data)
			n++
		}
		if n == len(recs) && n > 1 { // the limit did not shrink the batch: halve it
			n = len(recs) / 2
		}
		u, ok, sn := s.send(recs[:n], true, since)
		if !ok {
			return nil, false, sn
		}
		undecided, since = append(undecided, u...), sn
		recs = recs[n:]
	}
	return undecided, true, since
}

// learnLimit remembers that bodies of size bytes are too large, so later batches are built
// smaller instead of being split again.
func (s *MetloSink) learnLimit(size int) {
	limit := int64(size / 2)
	for {
		cur := s.bodyLimit.Load()
		if limit >= cur || limit < 1024 {
			return
		}
		if s.bodyLimit.CompareAndSwap(cur, limit) {
			s.limitGauge.Set(float64(limit))
			s.log.Warn("metlo backend refused a batch as too large (413); batches are now smaller", "sink", s.name,
				"refused_bytes", size, "batch_limit_bytes", limit)
			return
		}
	}
}

// sample is the start of a trace, for a log line.
func sample(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

type postResult struct {
	status     int
	retryAfter time.Duration
	answer     string // start of the response body
	bodySize   int
	err        error
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// trackedBody is a request body that counts itself open until the transport closes it:
// http.Client may go on reading a body after Do returns (a server that answered early),
// so its buffer is reused only once every body made from it is closed.
type trackedBody struct {
	io.Reader
	open *atomic.Int32
	once sync.Once
}

func newTrackedBody(b []byte, open *atomic.Int32) io.ReadCloser {
	open.Add(1)
	return &trackedBody{Reader: bytes.NewReader(b), open: open}
}

func (t *trackedBody) Close() error {
	t.once.Do(func() { t.open.Add(-1) })
	return nil
}

// post sends one batch as a JSON array.
func (s *MetloSink) post(recs []spool.Record) (res postResult) {
	buf := bodyPool.Get().(*bytes.Buffer)
	var open atomic.Int32
	defer func() {
		if open.Load() == 0 {
			bodyPool.Put(buf)
		} // else the transport still holds it: left to the garbage collector
	}()
	buf.Reset()
	buf.WriteByte('[')
	for i, r := range recs {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(r.Data)
	}
	buf.WriteByte(']')
	res.bodySize = buf.Len()

	ctx, cancel := context.WithTimeout(s.ctx, s.opts.RequestTimeout)
	defer cancel()
	body := buf.Bytes()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/v1/log-request/batch", newTrackedBody(body, &open))
	if err != nil {
		res.err = err
		return res
	}
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return newTrackedBody(body, &open), nil }
	req.Header.Set("Authorization", s.opts.Key)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := s.opts.Client.Do(req)
	s.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		res.err = err
		return res
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	res.status, res.answer = resp.StatusCode, string(answer)
	res.retryAfter = s.retryAfter(resp.Header.Get("Retry-After"))
	return res
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), bounded by MaxRetryAfter.
func (s *MetloSink) retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 0), s.opts.MaxRetryAfter)
}

// verify checks the key once.
func (s *MetloSink) verify(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/api/v1/verify", nil)
	if err != nil {
		return fmt.Errorf("verify metlo key: %w", err)
	}
	req.Header.Set("Authorization", s.opts.Key)
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("verify metlo key: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w (HTTP %d from %s/api/v1/verify): check METLO_KEY", ErrKeyRejected, resp.StatusCode, s.display)
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("verify metlo key: HTTP %d", resp.StatusCode)
	}
	return nil
}

// backoff is the delay before retry attempt+1: exponential from MinBackoff, capped at
// MaxBackoff, with full jitter on the upper half so many appliances do not retry in step;
// never shorter than the backend's Retry-After (itself bounded by MaxRetryAfter).
func (s *MetloSink) backoff(attempt int, floor time.Duration) time.Duration {
	d := s.opts.MinBackoff << min(attempt, 30)
	if d <= 0 || d > s.opts.MaxBackoff {
		d = s.opts.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	return max(d, floor)
}

// sleep waits d, returning false if the close deadline passed meanwhile.
func (s *MetloSink) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}
