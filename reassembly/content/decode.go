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
			zr, err := zlib.NewReader(src)
			if err != nil {
				return raw, rawTruncated, err
			}
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
	out := make([]byte, 0, min(limit, 4*len(raw)+512))
	buf := bytes.NewBuffer(out)
	n, err := io.CopyN(buf, r, int64(limit))
	cut := false
	if err == nil && n == int64(limit) {
		// Exactly at the limit: cut only if more follows.
		var one [1]byte
		if m, _ := r.Read(one[:]); m > 0 {
			cut = true
		}
	}
	if err != nil && err != io.EOF {
		if rawTruncated && (errors.Is(err, io.ErrUnexpectedEOF) || buf.Len() > 0) {
			return buf.Bytes(), true, nil // the prefix we could decode of a cut body
		}
		return raw, rawTruncated, err
	}
	return buf.Bytes(), cut || rawTruncated, nil
}
