package http2

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// grpcFrame length-prefixes one message.
func grpcFrame(msg []byte, compressed bool) []byte {
	b := make([]byte, 5, 5+len(msg))
	if compressed {
		b[0] = 1
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

func TestRenderWireFormat(t *testing.T) {
	var nested []byte
	nested = protowire.AppendTag(nested, 1, protowire.BytesType)
	nested = protowire.AppendString(nested, "inner")
	nested = protowire.AppendTag(nested, 2, protowire.VarintType)
	nested = protowire.AppendVarint(nested, 1)
	var m []byte
	m = protowire.AppendTag(m, 1, protowire.BytesType)
	m = protowire.AppendString(m, `alice "a" \ é`)
	m = protowire.AppendTag(m, 2, protowire.VarintType)
	m = protowire.AppendVarint(m, 42)
	m = protowire.AppendTag(m, 3, protowire.VarintType)
	neg := int64(-7)
	m = protowire.AppendVarint(m, uint64(neg)) // negative int64
	m = protowire.AppendTag(m, 4, protowire.Fixed64Type)
	m = protowire.AppendFixed64(m, math.Float64bits(19.99))
	m = protowire.AppendTag(m, 5, protowire.Fixed32Type)
	m = protowire.AppendFixed32(m, math.Float32bits(0.5))
	m = protowire.AppendTag(m, 6, protowire.Fixed64Type)
	m = protowire.AppendFixed64(m, 123456789) // an integer, not a plausible double
	m = protowire.AppendTag(m, 7, protowire.BytesType)
	m = protowire.AppendBytes(m, nested)
	m = protowire.AppendTag(m, 8, protowire.BytesType)
	m = protowire.AppendBytes(m, []byte{0xff, 0x00, 0x10})
	for _, tag := range []string{"a", "b"} {
		m = protowire.AppendTag(m, 9, protowire.BytesType)
		m = protowire.AppendString(m, tag)
	}
	m = protowire.AppendTag(m, 10, protowire.VarintType)
	m = protowire.AppendVarint(m, 1<<60)
	got, ok := appendMessage(nil, m, 0)
	want := `{"1":"alice \"a\" \\ é","2":42,"3":-7,"4":19.99,"5":0.5,"6":123456789,"7":{"1":"inner","2":1},"8":{"$bytes":"/wAQ"},"9":["a","b"],"10":"1152921504606846976"}`
	if !ok || string(got) != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	if !json.Valid(got) {
		t.Fatal("not JSON")
	}
	// Not a message: wire type 7, a truncated varint, field number 0.
	for _, bad := range [][]byte{{0x0f}, {0x08, 0x80}, {0x00, 0x01}, {0x0a, 0x05, 'a'}} {
		if out, ok := appendMessage([]byte("x"), bad, 0); ok || string(out) != "x" {
			t.Fatalf("%x rendered as %s", bad, out)
		}
	}
}

func TestRenderGRPCBodies(t *testing.T) {
	st, _ := structpb.NewStruct(map[string]any{"user": "bob", "admin": true})
	msg1, _ := proto.Marshal(st)
	msg2, _ := proto.Marshal(wrapperspb.String("second"))
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(msg2)
	w.Close()

	m := &message{grpc: true, grpcEncoding: "gzip"}
	one, cut, n, bad := renderGRPC(grpcFrame(msg2, false), m, 1000, false)
	if string(one) != `{"1":"second"}` || cut || n != 1 || bad {
		t.Fatalf("one: %s %v %d %v", one, cut, n, bad)
	}
	many, _, n, _ := renderGRPC(append(append(grpcFrame(msg1, false), grpcFrame(gz.Bytes(), true)...), grpcFrame(nil, false)...), m, 1000, false)
	if n != 3 || !json.Valid(many) || !strings.HasPrefix(string(many), "[{") || !strings.HasSuffix(string(many), `{"1":"second"},{}]`) ||
		!strings.Contains(string(many), `"bob"`) {
		t.Fatalf("many: %s", many)
	}
	// A message cut by the body cap: what parsed, flagged cut.
	part, cut, _, _ := renderGRPC(grpcFrame(msg1, false)[:12], m, 1000, true)
	if !cut || len(part) == 0 {
		t.Fatalf("cut: %s %v", part, cut)
	}
	// Compressed with an encoding we cannot undo: kept as bytes and flagged.
	odd, _, _, bad := renderGRPC(grpcFrame([]byte{1, 2, 3}, true), &message{grpc: true, grpcEncoding: "snappy"}, 1000, false)
	if !bad || string(odd) != `{"$compressed":"snappy","$bytes":"AQID"}` {
		t.Fatalf("snappy: %s %v", odd, bad)
	}
	// grpc+json messages are JSON already.
	js, _, _, _ := renderGRPC(grpcFrame([]byte(`{"a":1}`), false), &message{grpc: true, grpcJSON: true}, 1000, false)
	if string(js) != `{"a":1}` {
		t.Fatalf("json: %s", js)
	}
	// The output cap.
	big, cut, _, _ := renderGRPC(grpcFrame(msg1, false), m, 10, false)
	if len(big) != 10 || !cut {
		t.Fatalf("cap: %q %v", big, cut)
	}
}

func TestGRPCStatusMapping(t *testing.T) {
	for code, want := range map[int]int{0: 200, 1: 499, 3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 12: 501, 14: 503, 16: 401, 99: 500} {
		if got := grpcHTTPStatus(code); got != want {
			t.Errorf("code %d -> %d, want %d", code, got, want)
		}
	}
}

func TestGRPCCall(t *testing.T) {
	req, _ := proto.Marshal(wrapperspb.String("order-17"))
	resp, _ := proto.Marshal(wrapperspb.Int64(-3))
	c := newConn(t, Config{})
	c.handshake()
	c.prefaces()
	for i, status := range []string{"0", "5"} {
		sid := uint32(2*i + 1)
		c.headers(client, sid, false, ":method", "POST", ":scheme", "http", ":authority", "orders:50051", ":path", "/shop.Orders/Get",
			"content-type", "application/grpc", "te", "trailers", "grpc-timeout", "1S")
		c.data(client, sid, true, string(grpcFrame(req, false)))
		c.headers(server, sid, false, ":status", "200", "content-type", "application/grpc")
		if status == "0" {
			c.data(server, sid, false, string(grpcFrame(resp, false)))
		}
		c.headers(server, sid, true, "grpc-status", status, "grpc-message", map[string]string{"0": "", "5": "order not found"}[status])
	}
	// A trailers-only error: one HEADERS frame with the status.
	c.headers(client, 5, false, ":method", "POST", ":scheme", "http", ":authority", "orders:50051", ":path", "/shop.Orders/Delete", "content-type", "application/grpc")
	c.data(client, 5, true, string(grpcFrame(req, false)))
	c.headers(server, 5, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "7", "grpc-message", "denied")
	c.flush(client, 1448)
	c.flush(server, 1448)
	c.close()
	c.want(3)
	ok, nf, den := c.got[0], c.got[1], c.got[2]
	if ok.Request.Path != "/shop.Orders/Get" || string(ok.Request.Body) != `{"1":"order-17"}` || string(ok.Response.Body) != `{"1":-3}` ||
		ok.Response.Status != 200 || ok.Response.Reason != "OK" || ok.Flags != 0 {
		t.Fatalf("ok: %q %q %d %s flags %b", ok.Request.Body, ok.Response.Body, ok.Response.Status, ok.Response.Reason, ok.Flags)
	}
	if nf.Response.Status != 404 || nf.Response.Reason != "NOT_FOUND" || header(nf.Response.Headers, "grpc-message") != "order not found" || len(nf.Response.Body) != 0 {
		t.Fatalf("not found: %+v", nf.Response)
	}
	if den.Response.Status != 403 || header(den.Response.Headers, "grpc-status") != "7" {
		t.Fatalf("denied: %+v", den.Response)
	}
	if s := c.p.Stats(); s.Events[EvGRPCMessages] != 4 {
		t.Fatalf("grpc messages %d", s.Events[EvGRPCMessages])
	}
}
