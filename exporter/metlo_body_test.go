package exporter

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/exporter/metlotest"
)

// lateReader is a transport that answers 200 at once and reads the request body only
// afterwards, as net/http allows a RoundTripper to (a server that answers early leaves the
// client still writing): what it reads is what would have gone on the wire.
type lateReader struct {
	mu     sync.Mutex
	wg     sync.WaitGroup
	stored []metlotest.Trace
	broken int
}

func (l *lateReader) RoundTrip(r *http.Request) (*http.Response, error) {
	ok := &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}
	if r.Method != http.MethodPost {
		return ok, nil
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		time.Sleep(20 * time.Millisecond) // the sink builds its next batches meanwhile
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		var batch []metlotest.Trace
		l.mu.Lock()
		defer l.mu.Unlock()
		if err := json.Unmarshal(b, &batch); err != nil {
			l.broken++
			return
		}
		l.stored = append(l.stored, batch...)
	}()
	return ok, nil
}

// The memory of a batch's body is not reused while the HTTP client may still read it:
// before, the next batch overwrote it and the late reader saw another batch's traces.
func TestMetloBodyNotReusedWhileTransportReads(t *testing.T) {
	lr := &lateReader{}
	s := startSink(t, MetloOptions{Key: testKey, Client: &http.Client{Transport: lr}, BatchInterval: time.Millisecond,
		BatchTraces: 50, MaxInFlight: 4}, nil, nil)
	const n = 3000
	putN(s, n, nil)
	if err := closeWithin(t, s, time.Minute); err != nil {
		t.Fatal(err)
	}
	lr.wg.Wait()
	if missing, dups := distinct(lr.stored, n); lr.broken > 0 || len(missing) > 0 || dups > 0 {
		t.Fatalf("bodies read late: %d broken, %d traces missing, %d duplicated", lr.broken, len(missing), dups)
	}
}
