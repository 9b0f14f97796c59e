// Command h2server is the HTTP/2 lab's server, logging every exchange it served as ground
// truth JSONL (test/lab/groundtruth): a JSON API over cleartext HTTP/2 with prior
// knowledge (net/http's UnencryptedHTTP2) on -addr, the same API behind an "Upgrade: h2c"
// handler on -upgrade-addr (x/net/http2/h2c, the Go implementation of the upgrade), and
// the gRPC service lab.Orders (test/h2lab/grpclab) on -grpc-addr.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	//lint:ignore SA1019 the lab needs a real server that accepts Upgrade: h2c (see run)
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"

	"github.com/metlo-labs/metlo-appliance/test/h2lab/grpclab"
	"github.com/metlo-labs/metlo-appliance/test/lab/groundtruth"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "HTTP/1.1 and prior-knowledge h2c listen address")
	upAddr := flag.String("upgrade-addr", "127.0.0.1:8081", "Upgrade: h2c listen address")
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:50051", "gRPC listen address")
	truthPath := flag.String("truth", "groundtruth.jsonl", "ground-truth JSONL output")
	ready := flag.String("ready", "", "file to create once listening")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *upAddr, *grpcAddr, *truthPath, *ready, log); err != nil {
		log.Error("h2server failed", "err", err)
		os.Exit(1)
	}
}

func run(addr, upAddr, grpcAddr, truthPath, ready string, log *slog.Logger) error {
	rec, err := newRecorder(truthPath)
	if err != nil {
		return err
	}
	var lns []net.Listener
	for _, a := range []string{addr, upAddr, grpcAddr} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return errors.Join(fmt.Errorf("listen %s: %w", a, err), rec.Close())
		}
		lns = append(lns, ln)
	}
	api := rec.wrap(newAPI())
	prior := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	prior.Protocols.SetHTTP1(true)
	prior.Protocols.SetUnencryptedHTTP2(true)
	// net/http has no server side of Upgrade: h2c; the deprecated x/net package is the Go
	// implementation of it.
	//lint:ignore SA1019 the lab needs a real server that accepts Upgrade: h2c
	upgrade := &http.Server{Handler: h2c.NewHandler(api, &http2.Server{}), ReadHeaderTimeout: 10 * time.Second}
	gs := grpc.NewServer()
	grpclab.Register(gs, rec)

	errc := make(chan error, 3)
	go func() { errc <- prior.Serve(lns[0]) }()
	go func() { errc <- upgrade.Serve(lns[1]) }()
	go func() { errc <- gs.Serve(lns[2]) }()
	if ready != "" {
		if err := os.WriteFile(ready, []byte("ok\n"), 0o644); err != nil {
			return err
		}
	}
	log.Info("h2server listening", "h2c", addr, "upgrade", upAddr, "grpc", grpcAddr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gs.GracefulStop()
	err = errors.Join(err, prior.Shutdown(shut), upgrade.Shutdown(shut))
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	log.Info("h2server stopped", "exchanges", rec.n.Load())
	return errors.Join(err, rec.Close())
}

// newAPI is a small JSON API with bodies of every size, compression, trailers and errors.
func newAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		body := item(id, r.URL.Query().Get("q"))
		w.Header().Set("Content-Type", "application/json")
		if id%3 == 0 && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write(body)
			zw.Close()
			return
		}
		w.Write(body)
	})
	mux.HandleFunc("POST /items", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"created":true,"bytes":%d}`, len(b))
	})
	mux.HandleFunc("PUT /blobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /big/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		w.Write(bytes.Repeat([]byte("0123456789abcdef"), n/16))
	})
	mux.HandleFunc("GET /trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Write([]byte("streamed body"))
		w.Header().Set("X-Checksum", "abc123")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such thing", http.StatusNotFound)
	})
	return mux
}

func item(id int, q string) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "name": fmt.Sprintf("item-%d", id), "q": q,
		"tags": strings.Repeat("t", id%900), "price": float64(id) * 1.25})
	return b
}

// recorder writes one ground-truth line per finished exchange.
type recorder struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	seq atomic.Int64
	n   atomic.Int64
}

func newRecorder(path string) (*recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create ground truth: %w", err)
	}
	return &recorder{f: f, w: bufio.NewWriter(f)}, nil
}

// Record implements grpclab.Recorder.
func (r *recorder) Record(e *groundtruth.Exchange) {
	e.Seq = int(r.seq.Add(1))
	line, _ := json.Marshal(e)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w.Write(append(line, '\n'))
	r.n.Add(1)
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.w.Flush(), r.f.Close())
}

// wrap records what h served: the request body as read, the response body decoded.
func (r *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		sw := &captureWriter{ResponseWriter: w}
		h.ServeHTTP(sw, req)
		e := &groundtruth.Exchange{Client: req.RemoteAddr, Method: req.Method, Target: req.RequestURI, Status: sw.status,
			Case: req.Header.Get("X-Lab-Case")}
		if e.Status == 0 {
			e.Status = http.StatusOK
		}
		e.Path, e.Query, _ = strings.Cut(req.RequestURI, "?")
		e.SetReqBody(body)
		resp := sw.body.Bytes()
		if w.Header().Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(resp))
			if err == nil {
				resp, _ = io.ReadAll(zr)
			}
			e.RespEncoding = "gzip"
		}
		e.SetRespBody(resp)
		r.Record(e)
	})
}

// captureWriter keeps the status and the body bytes written.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body.Write(p)
	return c.ResponseWriter.Write(p)
}

// Flush passes flushes on (the trailers handler streams).
func (c *captureWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
