package main

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"

	"github.com/andybalholm/brotli"

	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

// exchangeCtx is the ground-truth entry being built for one request.
type exchangeCtx struct {
	e      *groundtruth.Exchange
	reqGen string // labbody spec the request body matched, if any
	sent   bool   // send filled the response fields
}

type ctxKey struct{}

func withExchange(ctx context.Context, x *exchangeCtx) context.Context {
	return context.WithValue(ctx, ctxKey{}, x)
}

func exchangeOf(r *http.Request) *exchangeCtx {
	x, _ := r.Context().Value(ctxKey{}).(*exchangeCtx)
	return x
}

// reply describes one response: the decoded body and how it goes on the wire.
type reply struct {
	status      int
	contentType string
	body        []byte // decoded body
	gen         string // labbody spec of body, when generated
	encoding    string // "", "gzip", "deflate" or "br"
	framing     string // "length" (default), "chunked", "chunked+trailers", "close", "close10"
	chunk       int    // chunk size for chunked framing (default 1500)
	header      http.Header
}

// bodyless reports whether HTTP forbids a body for this method/status.
func bodyless(method string, status int) bool {
	return method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified ||
		(status >= 100 && status < 200)
}

func encode(encoding string, body []byte) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch encoding {
	case "":
		return body, nil
	case "gzip":
		zw := gzip.NewWriter(&buf)
		_, err = zw.Write(body)
		err = firstErr(err, zw.Close())
	case "deflate": // HTTP "deflate" is the zlib format (RFC 9110 §8.4.1.2)
		zw := zlib.NewWriter(&buf)
		_, err = zw.Write(body)
		err = firstErr(err, zw.Close())
	case "br":
		bw := brotli.NewWriterLevel(&buf, 5)
		_, err = bw.Write(body)
		err = firstErr(err, bw.Close())
	default:
		return nil, fmt.Errorf("unknown encoding %q", encoding)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", encoding, err)
	}
	return buf.Bytes(), nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// send writes rp and fills the response half of the ground truth.
func send(w http.ResponseWriter, r *http.Request, rp reply) {
	x := exchangeOf(r)
	if rp.framing == "" {
		rp.framing = "length"
	}
	if rp.chunk <= 0 {
		rp.chunk = 1500
	}
	wire, err := encode(rp.encoding, rp.body)
	if err != nil {
		rp = reply{status: http.StatusInternalServerError, contentType: "text/plain", body: []byte(err.Error())}
		wire = rp.body
	}
	noBody := bodyless(r.Method, rp.status)
	x.sent = true
	x.e.Status = rp.status
	x.e.RespEncoding = rp.encoding
	if noBody {
		x.e.SetRespBody(nil)
		x.e.RespFraming = "none"
	} else {
		x.e.SetRespBody(rp.body)
		x.e.RespBodyGen = rp.gen
		x.e.RespFraming = rp.framing
	}

	h := w.Header()
	for k, v := range rp.header {
		h[k] = v
	}
	if rp.contentType != "" {
		h.Set("Content-Type", rp.contentType)
	}
	if rp.encoding != "" {
		h.Set("Content-Encoding", rp.encoding)
		h.Set("Vary", "Accept-Encoding")
	}
	switch {
	case noBody:
		if r.Method == http.MethodHead {
			h.Set("Content-Length", strconv.Itoa(len(wire)))
		}
		w.WriteHeader(rp.status)
	case rp.framing == "close" || rp.framing == "close10":
		sendUntilClose(w, rp, wire)
	case rp.framing == "chunked" || rp.framing == "chunked+trailers":
		sendChunked(w, rp, wire)
	default:
		h.Set("Content-Length", strconv.Itoa(len(wire)))
		w.WriteHeader(rp.status)
		w.Write(wire)
	}
}

func sendChunked(w http.ResponseWriter, rp reply, wire []byte) {
	trailers := rp.framing == "chunked+trailers"
	if trailers {
		w.Header().Set("Trailer", "X-Body-Sha256, X-Chunk-Count")
	}
	w.WriteHeader(rp.status)
	rc := http.NewResponseController(w)
	chunks := 0
	for off := 0; off < len(wire); off += rp.chunk {
		w.Write(wire[off:min(off+rp.chunk, len(wire))])
		rc.Flush() // each flush becomes one chunk on the wire
		chunks++
	}
	if trailers {
		sum := sha256.Sum256(rp.body)
		w.Header().Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
		w.Header().Set("X-Chunk-Count", strconv.Itoa(chunks))
	}
	if len(wire) == 0 {
		rc.Flush()
	}
}

// sendUntilClose takes the connection over and writes a response that has neither a
// Content-Length nor chunking: its body ends when the server closes the connection.
func sendUntilClose(w http.ResponseWriter, rp reply, wire []byte) {
	conn, bufrw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	proto := "HTTP/1.1"
	if rp.framing == "close10" {
		proto = "HTTP/1.0"
	}
	fmt.Fprintf(bufrw, "%s %d %s\r\n", proto, rp.status, http.StatusText(rp.status))
	for k, vs := range w.Header() {
		for _, v := range vs {
			fmt.Fprintf(bufrw, "%s: %s\r\n", k, v)
		}
	}
	bufrw.WriteString("Connection: close\r\n\r\n")
	for off := 0; off < len(wire); off += 4096 {
		bufrw.Write(wire[off:min(off+4096, len(wire))])
		bufrw.Flush()
	}
	bufrw.Flush()
}
