package datapath

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/test/synth"
)

// TestBackpressureIsCounted stalls the only worker in its exchange handler and keeps
// feeding frames: once the worker's batches are all in flight the source goroutine waits,
// and the snapshot must show how often and for how long.
func TestBackpressureIsCounted(t *testing.T) {
	release := make(chan struct{})
	d := NewDispatcher(DispatcherConfig{Workers: 1}, exchange.HandlerFunc(func(*exchange.Exchange) { <-release }))
	capt := synth.Build(50, 20, func(*rand.Rand) int { return 100 })
	h := d.NewHandler()
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for _, f := range capt.Frames {
			h.HandleFrame(&Frame{Data: f, Timestamp: 1})
			h.Flush() // one batch per frame: the worker's 8 batches run out fast
		}
	}()
	const stall = 150 * time.Millisecond
	time.Sleep(stall)
	if s := d.Snapshot(); s.BackpressureWaits == 0 {
		t.Fatalf("no wait counted while the worker is stalled: %+v", s.BackpressureWaits)
	}
	close(release)
	select {
	case <-fed:
	case <-time.After(10 * time.Second):
		t.Fatal("feeding did not finish after the worker was released")
	}
	d.Close()
	s := d.Snapshot()
	if s.BackpressureWaits == 0 || s.BackpressureTime < stall/2 {
		t.Errorf("back-pressure waits %d for %v, want > 0 for about %v", s.BackpressureWaits, s.BackpressureTime, stall)
	}
	if got := s.Reassembly.Exchanges["complete"]; got != uint64(capt.Exchanges) {
		t.Errorf("%d complete exchanges, want %d: waiting must not lose anything", got, capt.Exchanges)
	}
}
