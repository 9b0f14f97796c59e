package tcp

import (
	"testing"
	"time"
)

// checker is a Stream that verifies every delivery against the text the segments were
// cut from: each byte at its own offset, gaps and bytes covering the stream exactly once.
type checker struct {
	t     *testing.T
	base  uint32 // sequence number of text[0]
	text  []byte
	next  int  // offset the next delivery must start at
	join  bool // no handshake: the stream may start at any offset (a mid-stream join)
	ended bool
}

// expect checks that a delivery starts where the stream stands.
func (c *checker) expect(off int) {
	if c.join {
		c.join, c.next = false, off
	}
	if off != c.next {
		c.t.Fatalf("delivery at offset %d, expected offset %d", off, c.next)
	}
}

func (c *checker) Data(_ Dir, b []byte, m Meta) {
	off := int(m.Seq - c.base)
	c.expect(off)
	if off+len(b) > len(c.text) || string(b) != string(c.text[off:off+len(b)]) {
		c.t.Fatalf("delivered %q at offset %d", b, off)
	}
	c.next += len(b)
}

func (c *checker) Gap(_ Dir, n int, m Meta) {
	c.expect(int(m.Seq - c.base))
	if n <= 0 {
		c.t.Fatalf("gap of %d bytes", n)
	}
	c.next += n
}

func (c *checker) End(Dir)           { c.ended = true }
func (c *checker) Close()            {}
func (c *checker) Expire(int64) bool { return false }

type checkerFactory struct{ c *checker }

func (f checkerFactory) NewStream(*Conn, Dir, []byte) Stream { return f.c }

// FuzzStream sends pieces of a known text in any order, any overlap, any repetition,
// under a small buffer cap: whatever is delivered must be the text, in order, each byte
// once, with the holes as gaps, and every buffered byte released at the end.
func FuzzStream(f *testing.F) {
	f.Add([]byte{0, 10, 20, 10, 10, 10, 5, 30}, false)
	f.Add([]byte{200, 50, 0, 255, 100, 20, 0, 1}, true)
	f.Add([]byte{255, 255, 0, 0, 128, 3}, false)
	f.Fuzz(func(t *testing.T, script []byte, handshake bool) {
		text := make([]byte, 600)
		for i := range text {
			text[i] = byte('a' + i%26)
		}
		const isn = 0xFFFFFF00 // the stream wraps the sequence space
		c := &checker{t: t, base: isn + 1, text: text, join: !handshake}
		budget := NewBudget(300)
		a := NewAssembler(Config{FlowBufferBytes: 200, ReorderTimeout: time.Second}, budget, checkerFactory{c})
		k, d := NewKey(1, endpoint("10.0.0.1", 1), endpoint("10.0.0.2", 2))
		ts := int64(1)
		if handshake {
			a.Segment(&Segment{Key: k, Dir: d, Seq: isn, Flags: FlagSYN, Timestamp: ts})
		}
		for len(script) >= 2 {
			off := int(script[0]) * 2 % len(text)
			n := min(int(script[1]), len(text)-off)
			script = script[2:]
			ts += int64(100 * time.Millisecond)
			a.Segment(&Segment{Key: k, Dir: d, Seq: c.base + uint32(off), Flags: FlagACK, Payload: text[off : off+n], Timestamp: ts})
		}
		a.FlushAll()
		if budget.Used() != 0 {
			t.Fatalf("%d bytes still charged after FlushAll", budget.Used())
		}
		if s := a.Stats(); s.Flows != 0 {
			t.Fatalf("flows left: %+v", s)
		}
	})
}
