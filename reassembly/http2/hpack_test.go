package http2

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// encoder wraps the library's HPACK encoder: an independent implementation writes what
// our decoder must read.
type encoder struct {
	buf bytes.Buffer
	e   *hpack.Encoder
}

func newEncoder() *encoder {
	e := &encoder{}
	e.e = hpack.NewEncoder(&e.buf)
	return e
}

// block encodes name/value pairs into one header block.
func (e *encoder) block(kv ...string) []byte {
	e.buf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		name, sensitive := strings.CutPrefix(kv[i], "!")
		if err := e.e.WriteField(hpack.HeaderField{Name: name, Value: kv[i+1], Sensitive: sensitive}); err != nil {
			panic(err)
		}
	}
	return append([]byte(nil), e.buf.Bytes()...)
}

func fieldsString(fs []field) string {
	var b strings.Builder
	for _, f := range fs {
		if f.unknown {
			fmt.Fprintf(&b, "<unknown %q=%q> ", f.name, f.value)
			continue
		}
		fmt.Fprintf(&b, "%s=%s ", f.name, f.value)
	}
	return b.String()
}

func want(t *testing.T, fs []field, kv ...string) {
	t.Helper()
	var w strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if strings.HasPrefix(kv[i], "?") {
			fmt.Fprintf(&w, "<unknown %q=%q> ", strings.TrimPrefix(kv[i], "?"), kv[i+1])
			continue
		}
		fmt.Fprintf(&w, "%s=%s ", strings.TrimPrefix(kv[i], "!"), kv[i+1])
	}
	if got := fieldsString(fs); got != w.String() {
		t.Fatalf("fields\n got %s\nwant %s", got, w.String())
	}
}

func TestHPACKStaticTableMatchesLibrary(t *testing.T) {
	// The library's encoder emits an indexed field for every exact static-table match.
	e, d := newEncoder(), newHPACKDecoder()
	for i, s := range staticTable {
		if s.value == "" {
			continue // name-only entries encode as literals
		}
		b := e.block(s.name, s.value)
		if len(b) != 1 || b[0] != 0x80|byte(i+1) {
			t.Fatalf("library encoded %s: %s as %x, not static index %d", s.name, s.value, b, i+1)
		}
		fs, _, err := d.decode(b)
		if err != nil || len(fs) != 1 || fs[0].name != s.name || fs[0].value != s.value {
			t.Fatalf("static %d: %v %+v", i+1, err, fs)
		}
	}
}

func TestHPACKDifferential(t *testing.T) {
	// Random header lists through the library's encoder (dynamic table, Huffman, size
	// updates, never-indexed fields) must decode exactly as the library's decoder does.
	r := rand.New(rand.NewPCG(7, 7))
	names := []string{":method", ":path", ":authority", ":status", "content-type", "user-agent", "x-request-id", "cookie", "authorization", "grpc-status", "x-custom-header-with-a-long-name"}
	enc := newEncoder()
	lib := hpack.NewDecoder(4096, nil)
	ours := newHPACKDecoder()
	for round := range 3000 {
		if round%500 == 499 {
			sz := uint32(r.IntN(4097))
			enc.e.SetMaxDynamicTableSizeLimit(4096)
			enc.e.SetMaxDynamicTableSize(sz)
		}
		var kv []string
		for range 1 + r.IntN(12) {
			n := names[r.IntN(len(names))]
			if r.IntN(4) == 0 {
				n = "!" + n
			}
			v := fmt.Sprintf("v%d", r.IntN(40))
			if r.IntN(10) == 0 {
				v = strings.Repeat("é", r.IntN(300))
			}
			kv = append(kv, n, v)
		}
		b := enc.block(kv...)
		libFields, err := lib.DecodeFull(b)
		if err != nil {
			t.Fatalf("library: %v", err)
		}
		got, st, err := ours.decode(b)
		if err != nil || st.unknown+st.invalid != 0 {
			t.Fatalf("round %d: %v %+v", round, err, st)
		}
		if len(got) != len(libFields) {
			t.Fatalf("round %d: %d fields, library %d", round, len(got), len(libFields))
		}
		for i, f := range libFields {
			if got[i].name != f.Name || got[i].value != f.Value || got[i].sensitive != f.Sensitive {
				t.Fatalf("round %d field %d: %+v, library %+v", round, i, got[i], f)
			}
		}
	}
}

func TestHPACKJoinMidConnection(t *testing.T) {
	enc := newEncoder()
	// Before the capture joins: these insert entries the observer never sees.
	enc.block(":path", "/old", "x-tenant", "acme")
	d := newHPACKDecoder()
	d.lose() // joined mid-way

	// A reference to an unseen entry is reported as unknown, everything else decodes.
	fs, st, err := d.decode(enc.block(":method", "GET", ":path", "/old", "accept", "json"))
	if err != nil || st.unknown != 1 {
		t.Fatalf("err %v stats %+v", err, st)
	}
	want(t, fs, ":method", "GET", "?", "", "accept", "json")

	// New entries land in front of the unknown ones and resolve from then on.
	fs, st, _ = d.decode(enc.block(":path", "/old", "accept", "json", "x-tenant", "acme"))
	if st.unknown != 2 {
		t.Fatalf("stats %+v", st)
	}
	want(t, fs, "?", "", "accept", "json", "?", "")

	// An entry inserted with an unseen name keeps its value; its name stays unknown.
	fs, _, _ = d.decode(enc.block("x-tenant", "globex"))
	want(t, fs, "?", "globex")
	fs, st, _ = d.decode(enc.block("x-tenant", "globex", "accept", "json"))
	if st.unknown != 1 {
		t.Fatalf("stats %+v", st)
	}
	want(t, fs, "?", "globex", "accept", "json")
	if !d.unknownTail {
		t.Fatal("unknown tail forgotten too early")
	}

	// Enough new entries evict the unseen ones: the table is whole again.
	for i := 0; d.unknownTail; i++ {
		if i > 200 {
			t.Fatal("table never resynchronised")
		}
		d.decode(enc.block("x-fill", fmt.Sprintf("%040d", i)))
	}
	fs, st, _ = d.decode(enc.block(":path", "/new", "x-tenant", "initech"))
	fs2, st2, _ := d.decode(enc.block(":path", "/new", "x-tenant", "initech"))
	if st.unknown+st.invalid+st2.unknown+st2.invalid != 0 {
		t.Fatalf("after resync: %+v %+v", st, st2)
	}
	want(t, fs, ":path", "/new", "x-tenant", "initech")
	want(t, fs2, ":path", "/new", "x-tenant", "initech")
}

func TestHPACKSizeUpdateToZeroResynchronises(t *testing.T) {
	enc := newEncoder()
	enc.block("a", "1")
	d := newHPACKDecoder()
	d.lose()
	enc.e.SetMaxDynamicTableSize(0)
	enc.e.SetMaxDynamicTableSize(4096)
	fs, st, err := d.decode(enc.block("a", "1"))
	if err != nil || st.unknown != 0 || d.unknownTail {
		t.Fatalf("err %v st %+v tail %v", err, st, d.unknownTail)
	}
	want(t, fs, "a", "1")
}

func TestHPACKMalformedBlockLosesTable(t *testing.T) {
	enc := newEncoder()
	d := newHPACKDecoder()
	d.decode(enc.block("x-a", "1"))
	for _, bad := range [][]byte{
		{0x80},            // index 0
		{0x40, 0x05, 'a'}, // string longer than the block
		{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // integer overflow
		{0x40, 0x81, 0xff, 0x01, 'v'},                                      // invalid Huffman (EOS)
	} {
		d.decode(enc.block("x-a", "1"))
		if _, _, err := d.decode(bad); err == nil {
			t.Fatalf("%x decoded without error", bad)
		}
		if !d.unknownTail || d.n != 0 {
			t.Fatalf("%x: table kept after a bad block", bad)
		}
	}
}

func TestHPACKSharedStringsAllocation(t *testing.T) {
	enc := newEncoder()
	d := newHPACKDecoder()
	b := enc.block(":method", "POST", ":path", "/grpc.Svc/Call", "content-type", "application/grpc", "te", "trailers")
	d.decode(b)
	again := enc.block(":method", "POST", ":path", "/grpc.Svc/Call", "content-type", "application/grpc", "te", "trailers")
	// Every field indexed now: decoding allocates nothing.
	if n := testing.AllocsPerRun(100, func() { d.decode(again) }); n != 0 {
		t.Fatalf("%v allocations decoding an all-indexed block", n)
	}
	lit := enc.block("!x-unindexed", "never", "!authorization", "secret")
	// Literals without indexing: one string for the whole block.
	if n := testing.AllocsPerRun(100, func() { d.decode(lit) }); n != 1 {
		t.Fatalf("%v allocations decoding a literal block, want 1", n)
	}
}

func BenchmarkHPACKLiteral(b *testing.B) {
	enc := newEncoder()
	d := newHPACKDecoder()
	lit := enc.block("!x-unindexed", "never", "!authorization", "secret")
	b.ReportAllocs()
	for range b.N {
		d.decode(lit)
	}
}
