package spool

import "sync"

// Memory is the in-memory backlog used when no spool directory is configured: the same
// contract as Spool, bounded in records and bytes (new records are refused when full), and
// nothing survives the process.
type Memory struct {
	mu         sync.Mutex
	items      []Record
	head       int // next record to hand out
	maxRecords int64
	maxBytes   int64
	st         Stats
	notify     chan struct{}
	closed     bool
}

// NewMemory returns an empty backlog holding at most maxRecords records and maxBytes bytes.
func NewMemory(maxRecords, maxBytes int64) *Memory {
	return &Memory{maxRecords: maxRecords, maxBytes: maxBytes, notify: make(chan struct{}, 1),
		st: Stats{MaxBytes: maxBytes}}
}

// Append copies data in, or returns ErrFull / ErrFullBytes.
func (m *Memory) Append(key uint64, data []byte) (int64, error) {
	n := int64(recordHeader + len(data))
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return 0, ErrClosed
	}
	if m.st.Records >= m.maxRecords {
		m.mu.Unlock()
		return 0, ErrFull
	}
	if m.st.Bytes+n > m.maxBytes {
		m.mu.Unlock()
		return 0, ErrFullBytes
	}
	m.items = append(m.items, Record{Key: key, Data: append([]byte(nil), data...)})
	m.st.Records++
	m.st.Unread++
	m.st.Bytes += n
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
	return 0, nil
}

// Notify is signalled (without blocking) after appends.
func (m *Memory) Notify() <-chan struct{} { return m.notify }

// Next hands out up to maxN records in order totalling at most maxBytes of data (at least one).
func (m *Memory) Next(maxN, maxBytes int) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []Record
	total := 0
	for m.head < len(m.items) && len(out) < maxN {
		r := m.items[m.head]
		if len(out) > 0 && total+len(r.Data) > maxBytes {
			break
		}
		total += len(r.Data)
		out = append(out, r)
		m.items[m.head] = Record{}
		m.head++
	}
	m.st.Unread -= int64(len(out))
	if m.head > 1024 && m.head*2 > len(m.items) {
		n := copy(m.items, m.items[m.head:])
		clear(m.items[n:])
		m.items, m.head = m.items[:n], 0
	}
	return out, nil
}

// Ack forgets records handed out by Next.
func (m *Memory) Ack(recs []Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		m.st.Records--
		m.st.Bytes -= r.Size()
	}
}

// Stats returns the current counts.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	st.DiskBytes = st.Bytes
	return st
}

// Fill is the larger of the record and byte shares in use.
func (m *Memory) Fill() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return max(float64(m.st.Records)/float64(m.maxRecords), float64(m.st.Bytes)/float64(m.maxBytes))
}

// Close drops everything; Stats still reports what was lost.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.items, m.head = nil, 0
	return nil
}
