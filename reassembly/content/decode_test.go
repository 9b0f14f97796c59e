package content

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
)

func encode(t *testing.T, enc string, plain []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "deflate":
		w = zlib.NewWriter(&b)
	case "raw-deflate":
		w, _ = flate.NewWriter(&b, 5)
	case "br":
		w = brotli.NewWriter(&b)
	}
	w.Write(plain)
	w.Close()
	return b.Bytes()
}

func TestDecodeEveryEncodingAndTheCap(t *testing.T) {
	plain := []byte(strings.Repeat(`{"id":7,"name":"ann"},`, 3000)) // 66 000 bytes
	for _, enc := range []string{"gzip", "deflate", "raw-deflate", "br"} {
		name := enc
		if enc == "raw-deflate" {
			name = "deflate" // servers that send raw DEFLATE label it deflate too
		}
		raw := encode(t, enc, plain)
		for range 2 { // the second round reuses pooled readers
			got, cut, err := Decode(raw, name, 1<<20, false)
			if err != nil || cut || !bytes.Equal(got, plain) {
				t.Fatalf("%s: %d bytes cut=%v err=%v", enc, len(got), cut, err)
			}
		}
		got, cut, err := Decode(raw, name, 1000, false)
		if err != nil || !cut || !bytes.Equal(got, plain[:1000]) {
			t.Fatalf("%s capped: %d bytes cut=%v err=%v", enc, len(got), cut, err)
		}
		if got, cut, err := Decode(raw, name, len(plain), false); err != nil || cut || len(got) != len(plain) {
			t.Fatalf("%s exactly at the cap: %d bytes cut=%v err=%v", enc, len(got), cut, err)
		}
		// The capture lost the end of the body: keep the prefix that decodes, flagged (brotli
		// may hold back all its output until more input comes: an empty prefix is fine).
		got, cut, err = Decode(raw[:len(raw)/2], name, 1<<20, true)
		if err != nil || !cut || (len(got) == 0 && enc != "br") || !bytes.Equal(got, plain[:len(got)]) {
			t.Fatalf("%s cut short: %d bytes cut=%v err=%v", enc, len(got), cut, err)
		}
	}
}

func TestDecodeRefusesWhatItCannot(t *testing.T) {
	raw := []byte("not compressed at all")
	for _, enc := range []string{"gzip", "br", "compress"} {
		got, _, err := Decode(raw, enc, 100, false)
		if err == nil || !bytes.Equal(got, raw) {
			t.Errorf("%s: %q %v: want the raw bytes back and an error", enc, got, err)
		}
	}
	if got, cut, err := Decode(raw, "identity", 100, false); err != nil || cut || !bytes.Equal(got, raw) {
		t.Errorf("identity changed the body: %q %v %v", got, cut, err)
	}
}
