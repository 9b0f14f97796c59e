// Package content undoes the Content-Encoding of message bodies (gzip, deflate, br) for
// every protocol parser, keeping at most a cap of decoded bytes.
package content

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"sync"

	"github.com/andybalholm/brotli"
)

// Decoders are pooled: building a flate or brotli reader allocates tens of kilobytes.
var (
	gzipPool   sync.Pool
	zlibPool   sync.Pool
	flatePool  sync.Pool
	brotliPool sync.Pool
)

// Decode undoes Content-Encoding, keeping at most limit decoded bytes. It returns the
// decoded body, whether it was cut (by limit or because the encoded input itself was cut)
// and an error when the encoding is unknown or the data is not what it claims.
func Decode(raw []byte, encoding string, limit int, rawTruncated bool) ([]byte, bool, error) {
	var r io.Reader
	src := bytes.NewReader(raw)
	switch encoding {
	case "gzip", "x-gzip":
		zr, _ := gzipPool.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(src)
		} else {
			err = zr.Reset(src)
		}
		if err != nil {
			return raw, rawTruncated, err
		}
		zr.Multistream(true)
		defer gzipPool.Put(zr)
		r = zr
	case "deflate":
		// "deflate" means zlib-wrapped per RFC 9110, but some servers send raw DEFLATE.
		if len(raw) >= 2 && (uint16(raw[0])<<8|uint16(raw[1]))%31 == 0 && raw[0]&0x0f == 8 {
			zr, _ := zlibPool.Get().(io.ReadCloser)
			var err error
			if zr == nil {
				zr, err = zlib.NewReader(src)
			} else {
				err = zr.(zlib.Resetter).Reset(src, nil)
			}
			if err != nil {
				return raw, rawTruncated, err
			}
			defer zlibPool.Put(zr)
			r = zr
		} else {
			fr, _ := flatePool.Get().(io.ReadCloser)
			if fr == nil {
				fr = flate.NewReader(src)
			} else {
				_ = fr.(flate.Resetter).Reset(src, nil)
			}
			defer flatePool.Put(fr)
			r = fr
		}
	case "br":
		br, _ := brotliPool.Get().(*brotli.Reader)
		if br == nil {
			br = brotli.NewReader(src)
		} else {
			_ = br.Reset(src)
		}
		defer brotliPool.Put(br)
		r = br
	case "", "identity":
		return raw, rawTruncated, nil
	default:
		return raw, rawTruncated, errors.New("unsupported content-encoding " + encoding)
	}
	out, err := readUpTo(r, limit, min(limit, 4*len(raw)+512))
	cut := false
	if err == nil && len(out) == limit {
		// Exactly at the limit: cut only if more follows.
		var one [1]byte
		if m, _ := r.Read(one[:]); m > 0 {
			cut = true
		}
	}
	if err != nil {
		if rawTruncated && (errors.Is(err, io.ErrUnexpectedEOF) || len(out) > 0) {
			return out, true, nil // the prefix we could decode of a cut body
		}
		return raw, rawTruncated, err
	}
	return out, cut || rawTruncated, nil
}

// readUpTo reads r to its end or to limit bytes into one slice, starting at size bytes and
// doubling (never past limit): one allocation for most bodies, no intermediate buffers.
// io.EOF is not an error.
func readUpTo(r io.Reader, limit, size int) ([]byte, error) {
	out := make([]byte, 0, max(size, 1))
	for len(out) < limit {
		if len(out) == cap(out) {
			grown := make([]byte, len(out), min(2*cap(out), limit))
			copy(grown, out)
			out = grown
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}
