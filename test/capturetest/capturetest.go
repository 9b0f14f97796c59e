// Package capturetest runs a capture file through the collector's datapath in tests and
// counts what comes out.
package capturetest

import (
	"context"
	"sync"
	"testing"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/pcapsrc"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
)

// Exchanges decodes the capture at path (raw-mode decoder, two reassembly workers) and
// returns the exchanges emitted, those with a response, and the datapath's counters.
func Exchanges(t testing.TB, path string) (emitted, paired int, s datapath.Snapshot) {
	t.Helper()
	var mu sync.Mutex
	d := datapath.NewDispatcher(datapath.DispatcherConfig{Workers: 2, Decoder: datapath.DecoderConfig{Raw: true}},
		exchange.HandlerFunc(func(e *exchange.Exchange) {
			mu.Lock()
			defer mu.Unlock()
			emitted++
			if e.Response.Status != 0 {
				paired++
			}
		}))
	if err := pcapsrc.New(pcapsrc.Config{Path: path}).Run(context.Background(), d.NewHandler); err != nil {
		t.Fatal(err)
	}
	d.Close()
	return emitted, paired, d.Snapshot()
}
