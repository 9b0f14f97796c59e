// Command labclient drives labserver through keep-alive connections, pipelining,
// 100-continue, chunked uploads, close-delimited responses and large bodies, from a seed so
// every run sends the same requests.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type config struct {
	addr      string // server ip:port
	host      string // Host header
	seed      uint64
	workers   int  // concurrent keep-alive clients
	perWorker int  // requests per keep-alive client
	pipelines int  // pipelined connections
	depth     int  // requests per pipelined connection
	huge      bool // also move raw (uncompressed) 1 MiB bodies both ways
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:8080", "server address")
	flag.StringVar(&c.host, "host", "api.lab.test", "Host header")
	flag.Uint64Var(&c.seed, "seed", 1, "seed for request content")
	flag.IntVar(&c.workers, "workers", 4, "concurrent keep-alive clients")
	flag.IntVar(&c.perWorker, "per-worker", 30, "requests per keep-alive client")
	flag.IntVar(&c.pipelines, "pipelines", 3, "pipelined connections")
	flag.IntVar(&c.depth, "depth", 8, "requests written back to back per pipelined connection")
	flag.BoolVar(&c.huge, "huge", true, "also send and fetch uncompressed 1 MiB bodies")
	timeout := flag.Duration("timeout", 2*time.Minute, "overall deadline")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	n, err := run(ctx, c, log)
	log.Info("labclient done", "exchanges", n)
	if err != nil {
		log.Error("labclient failed", "err", err)
		os.Exit(1)
	}
}

// run starts every scenario concurrently and returns how many exchanges completed.
func run(ctx context.Context, c config, log *slog.Logger) (int64, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		count atomic.Int64
	)
	do := func(name string, f func() (int, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := f()
			count.Add(int64(n))
			if err != nil {
				mu.Lock()
				errs = append(errs, errors.New(name+": "+err.Error()))
				mu.Unlock()
			}
			log.Debug("scenario done", "name", name, "exchanges", n)
		}()
	}
	for w := range c.workers {
		do("keepalive", func() (int, error) { return keepAlive(ctx, c, w) })
	}
	for p := range c.pipelines {
		do("pipeline", func() (int, error) { return pipeline(ctx, c, p) })
	}
	do("expect", func() (int, error) { return expectContinue(ctx, c) })
	do("close", func() (int, error) { return closeAfter(ctx, c) })
	do("legacy", func() (int, error) { return untilClose(ctx, c) })
	do("large", func() (int, error) { return large(ctx, c) })
	wg.Wait()
	return count.Load(), errors.Join(errs...)
}
