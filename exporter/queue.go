package exporter

import "sync"

// traceQueue is a FIFO of encoded traces bounded in count and bytes; push never blocks.
type traceQueue struct {
	mu        sync.Mutex
	items     [][]byte
	head      int
	bytes     int64
	maxTraces int
	maxBytes  int64
	notify    chan struct{} // signalled (without blocking) on every push
}

func newTraceQueue(maxTraces int, maxBytes int64) *traceQueue {
	return &traceQueue{maxTraces: maxTraces, maxBytes: maxBytes, notify: make(chan struct{}, 1)}
}

// push appends a copy of trace, or returns the drop outcome when the queue is full.
func (q *traceQueue) push(trace []byte) string {
	q.mu.Lock()
	if len(q.items)-q.head >= q.maxTraces {
		q.mu.Unlock()
		return OutcomeDroppedQueueFull
	}
	if q.bytes+int64(len(trace)) > q.maxBytes {
		q.mu.Unlock()
		return OutcomeDroppedQueueBytes
	}
	q.items = append(q.items, append([]byte(nil), trace...))
	q.bytes += int64(len(trace))
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return ""
}

// size returns the queued traces and bytes.
func (q *traceQueue) size() (int64, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int64(len(q.items) - q.head), q.bytes
}

// take pops up to maxN traces whose JSON array ("[a,b]") fits in maxBody bytes; it always
// pops at least one trace when any is queued (the exporter keeps each under the limit).
func (q *traceQueue) take(maxN, maxBody int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out [][]byte
	size := 2
	for q.head < len(q.items) && len(out) < maxN {
		t := q.items[q.head]
		if len(out) > 0 && size+1+len(t) > maxBody {
			break
		}
		size += 1 + len(t)
		out = append(out, t)
		q.items[q.head] = nil
		q.head++
		q.bytes -= int64(len(t))
	}
	if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return out
}

// drain empties the queue and returns how many traces it held.
func (q *traceQueue) drain() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.items) - q.head
	q.items, q.head, q.bytes = nil, 0, 0
	return n
}
