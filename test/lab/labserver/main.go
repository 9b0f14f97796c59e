// Command labserver is the lab's HTTP/1.1 API server: a realistic JSON API plus every
// framing case a collector must parse, logging each exchange it served as ground truth JSONL.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	truthPath := flag.String("truth", "groundtruth.jsonl", "ground-truth JSONL output")
	ready := flag.String("ready", "", "file to create once listening (for scripts)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *truthPath, *ready, log); err != nil {
		log.Error("labserver failed", "err", err)
		os.Exit(1)
	}
}

func run(addr, truthPath, ready string, log *slog.Logger) error {
	rec, err := newRecorder(truthPath)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.Join(err, rec.Close())
	}
	srv := &http.Server{
		Handler:           rec.wrap(newAPI()),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if ready != "" {
		if err := os.WriteFile(ready, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return errors.Join(err, ln.Close(), rec.Close())
		}
	}
	log.Info("labserver listening", "addr", ln.Addr().String(), "truth", truthPath)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.Shutdown(shutCtx)
		cancel()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	log.Info("labserver stopped", "exchanges", rec.Count())
	return errors.Join(err, rec.Close())
}
