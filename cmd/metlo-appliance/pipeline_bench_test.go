package main

import (
	"io"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/exporter"
	"github.com/metlo-labs/metlo-appliance/reassembly"
	"github.com/metlo-labs/metlo-appliance/reassembly/exchange"
	"github.com/metlo-labs/metlo-appliance/reassembly/tcp"
	"github.com/metlo-labs/metlo-appliance/test/synth"
)

// runPass decodes and reassembles the whole capture on this goroutine.
func runPass(b *testing.B, capt *synth.Capture, h exchange.Handler) {
	dec := datapath.NewDecoder(datapath.DecoderConfig{})
	asm := reassembly.NewAssembler(reassembly.Config{}, h)
	var seg tcp.Segment
	f := datapath.Frame{Timestamp: time.Now().UnixNano()}
	for _, fr := range capt.Frames {
		f.Data = fr
		f.Timestamp += 1000
		if _, out := dec.Decode(&f, &seg); out == datapath.OutcomeTCP {
			asm.Segment(&seg)
		}
	}
	asm.FlushAll()
}

func reportPipeline(b *testing.B, capt *synth.Capture, n int) {
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(capt.Exchanges*b.N)/sec, "exchanges/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(capt.Frames)*b.N), "ns/packet")
	if n != capt.Exchanges*b.N {
		b.Fatalf("got %d exchanges, want %d", n, capt.Exchanges*b.N)
	}
}

// benchPasses runs runPass b.N times over capt and reports the pipeline metrics, plus
// exchanges per second of the process's CPU time: on a machine shared with other work
// (wall time includes waiting for a core) that is the per-core figure to compare.
func benchPasses(b *testing.B, capt *synth.Capture, h exchange.Handler, n *int) {
	b.SetBytes(capt.Bytes)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		runPass(b, capt, h)
	}
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(capt.Exchanges*b.N)/cpu.Seconds(), "exchanges/cpu-s")
	}
	reportPipeline(b, capt, *n)
}

// cpuTime is the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPipelineExchanges: mirrored frames → Exchange values, one goroutine.
func BenchmarkPipelineExchanges(b *testing.B) {
	n := 0
	benchPasses(b, synth.Build(200, 50, synth.MixedAPI), exchange.HandlerFunc(func(*exchange.Exchange) { n++ }), &n)
}

// BenchmarkPipelineExchangesHTTP2: the same API traffic as cleartext HTTP/2 (prior
// knowledge, 8 streams in flight per connection) → Exchange values, one goroutine.
func BenchmarkPipelineExchangesHTTP2(b *testing.B) {
	n := 0
	benchPasses(b, synth.BuildHTTP2(200, 48, 8, synth.MixedAPI), exchange.HandlerFunc(func(*exchange.Exchange) { n++ }), &n)
}

// BenchmarkPipelineJSONL: as above plus encoding each exchange as a JSONL trace.
func BenchmarkPipelineJSONL(b *testing.B) {
	var enc exporter.TraceEncoder
	buf := make([]byte, 0, 64<<10)
	n := 0
	h := exchange.HandlerFunc(func(e *exchange.Exchange) {
		buf = enc.AppendTrace(buf[:0], e)
		buf = append(buf, '\n')
		_, _ = io.Discard.Write(buf)
		n++
	})
	benchPasses(b, synth.Build(200, 50, synth.MixedAPI), h, &n)
}

// BenchmarkPipelineLargeBodies: 1 MiB responses (truncated at the 64 KiB cap) — raw MB/s.
func BenchmarkPipelineLargeBodies(b *testing.B) {
	n := 0
	benchPasses(b, synth.Build(8, 4, func(*rand.Rand) int { return 1 << 20 }), exchange.HandlerFunc(func(*exchange.Exchange) { n++ }), &n)
}

// BenchmarkDispatcher: the same traffic through the sharded workers (use -cpu 1,2,…).
func BenchmarkDispatcher(b *testing.B) {
	capt := synth.Build(200, 50, synth.MixedAPI)
	b.SetBytes(capt.Bytes)
	b.ReportAllocs()
	b.ResetTimer()
	var total int64
	for range b.N {
		var n atomicCounter
		d := datapath.NewDispatcher(datapath.DispatcherConfig{Workers: runtime.GOMAXPROCS(0)}, exchange.HandlerFunc(func(*exchange.Exchange) { n.add() }))
		h := d.NewHandler()
		f := datapath.Frame{Timestamp: time.Now().UnixNano()}
		for _, fr := range capt.Frames {
			f.Data = fr
			f.Timestamp += 1000
			h.HandleFrame(&f)
		}
		h.Flush()
		d.Close()
		total += n.load()
	}
	reportPipeline(b, capt, int(total))
}

// BenchmarkIdleFlowMemory measures the heap held per idle keep-alive connection (one
// finished exchange, both directions and parser state).
func BenchmarkIdleFlowMemory(b *testing.B) {
	const flows = 20000
	capt := synth.Build(flows, 1, func(*rand.Rand) int { return 200 })
	// Drop each connection's FIN pair so the flows stay open and idle.
	frames := capt.Frames[:len(capt.Frames)-2*flows]
	for range b.N {
		dec := datapath.NewDecoder(datapath.DecoderConfig{})
		asm := reassembly.NewAssembler(reassembly.Config{}, exchange.HandlerFunc(func(*exchange.Exchange) {}))
		var seg tcp.Segment
		f := datapath.Frame{Timestamp: 1}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, fr := range frames {
			f.Data = fr
			if _, out := dec.Decode(&f, &seg); out == datapath.OutcomeTCP {
				asm.Segment(&seg)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := asm.Stats().Flows; got != flows {
			b.Fatalf("%d flows open, want %d", got, flows)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/flows, "B/idle-flow")
		runtime.KeepAlive(asm)
	}
}
