package http2

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzHPACK decodes arbitrary header blocks with a fresh table. Nothing may panic, and
// wherever the library's decoder accepts a block ours must decode the same fields (and
// the other way round when ours found no reference it could not resolve).
func FuzzHPACK(f *testing.F) {
	e := newEncoder()
	f.Add(e.block(":method", "GET", ":path", "/a", "x", "y", "!authorization", "secret", "x", "y"))
	f.Add([]byte{0x3f, 0xe1, 0x1f, 0x82})
	f.Add([]byte{0x40, 0x81, 0x1f, 0x81, 0x1f})
	f.Fuzz(func(t *testing.T, block []byte) {
		lib := hpack.NewDecoder(4096, nil)
		lib.SetAllowedMaxDynamicTableSize(maxTableSize) // ours does not know the peer's SETTINGS
		want, libErr := lib.DecodeFull(block)
		d := newHPACKDecoder()
		got, st, err := d.decode(block)
		clean := err == nil && st.unknown+st.invalid == 0
		if libErr == nil && !clean {
			t.Fatalf("library decoded %x, ours: %v %+v", block, err, st)
		}
		if libErr != nil && clean {
			t.Fatalf("ours decoded %x, library: %v", block, libErr)
		}
		if !clean {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%d fields, library %d", len(got), len(want))
		}
		for i := range want {
			if got[i].name != want[i].Name || got[i].value != want[i].Value || got[i].sensitive != want[i].Sensitive {
				t.Fatalf("field %d: %+v, library %+v", i, got[i], want[i])
			}
		}
	})
}

// seedConversation frames a small exchange set with the library (both directions, each
// prefixed by its length) for the stream fuzzer's corpus.
func seedConversation() []byte {
	c := newConn(nil, Config{})
	c.prefaces()
	cl, sv := c.peers[client], c.peers[server]
	c.headers(client, 1, false, ":method", "POST", ":scheme", "http", ":path", "/a", "content-type", "application/grpc")
	c.data(client, 1, true, "\x00\x00\x00\x00\x02\x08\x01")
	sv.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true, BlockFragment: sv.enc.block(":method", "GET", ":path", "/p")})
	c.headers(server, 1, false, ":status", "200", "content-type", "application/grpc")
	sv.fr.WriteDataPadded(1, false, []byte("\x00\x00\x00\x00\x00"), []byte{0, 0})
	c.headers(server, 1, true, "grpc-status", "0")
	cl.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	sv.fr.WriteGoAway(1, 0, nil)
	var out []byte
	for _, who := range []int{client, server} {
		b := c.pending(who)
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, byte(who))
		out = append(out, b...)
	}
	return out
}

// FuzzStream drives one connection's stream consumer with a script of deliveries: each
// a 2-byte length, a control byte (bit 0: direction, bit 1: a gap instead of bytes) and
// the bytes. Nothing may panic, bodies stay under the cap, every exchange is HTTP/2 with
// a method or flagged, and every byte charged to the budget is released at the end.
func FuzzStream(f *testing.F) {
	f.Add(seedConversation())
	f.Add([]byte("\x00\x18\x00" + Preface))
	f.Add([]byte(fmt.Sprintf("\x00\x10\x01%s\x00\x05\x03xxxxx", strings.Repeat("\x00", 16))))
	f.Fuzz(func(t *testing.T, script []byte) {
		c := newConn(t, Config{BodyCap: 256, MaxHeaderBytes: 512, MaxStreams: 8})
		if len(script) > 0 && script[0]&0x80 != 0 {
			c.handshake() // otherwise the capture joins mid-connection
		}
		for len(script) >= 3 {
			n := int(binary.BigEndian.Uint16(script)) % 2048
			ctl := script[2]
			script = script[3:]
			n = min(n, len(script))
			who := int(ctl & 1)
			if ctl&2 != 0 {
				c.segment(who, 0, nil, n+1)
			} else {
				c.segment(who, 0, script[:n], 0)
				script = script[n:]
			}
		}
		c.close()
		for _, e := range c.got {
			if len(e.Request.Body) > 256 || len(e.Response.Body) > 256 || e.Request.Proto != "HTTP/2.0" {
				t.Fatalf("exchange %+v", e)
			}
		}
		if c.budget.Used() != 0 {
			t.Fatalf("budget %d left", c.budget.Used())
		}
	})
}
