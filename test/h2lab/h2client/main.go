// Command h2client drives the HTTP/2 lab's server: -mode http makes API calls over
// cleartext HTTP/2 with prior knowledge (net/http's UnencryptedHTTP2), each connection
// carrying many concurrent streams; -mode grpc calls lab.Orders (test/h2lab/grpclab);
// -mode grpc-join makes -n calls, then (once -start exists) -late more on the same
// connection, for a capture that joins it mid-way.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/metlo-labs/metlo-appliance/test/h2lab/grpclab"
)

func main() {
	mode := flag.String("mode", "http", "http or grpc")
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	conns := flag.Int("conns", 4, "connections")
	workers := flag.Int("workers", 8, "concurrent requests per connection")
	n := flag.Int("n", 1000, "requests (or calls) in total")
	seed := flag.Uint64("seed", 1, "random seed")
	late := flag.Int("late", 500, "grpc-join: calls after the capture joined")
	ready := flag.String("ready", "", "grpc-join: file to create when the early calls are done")
	start := flag.String("start", "", "grpc-join: file to wait for before the late calls")
	flag.Parse()
	var err error
	switch *mode {
	case "http":
		err = driveHTTP(*addr, *conns, *workers, *n, *seed)
	case "grpc":
		err = grpclab.Drive(context.Background(), *addr, *conns, *workers, *n, *seed)
	case "grpc-join":
		err = grpclab.DriveJoin(context.Background(), *addr, *n, *late, *ready, *start, *seed)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "h2client:", err)
		os.Exit(1)
	}
}

func driveHTTP(addr string, conns, workers, n int, seed uint64) error {
	var wg sync.WaitGroup
	errs := make(chan error, conns*workers)
	per := n / (conns * workers)
	for c := range conns {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true) // one TCP connection per transport, streams multiplexed
		cl := &http.Client{Transport: tr}
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(c*1000+w)))
				for i := range per {
					if err := request(cl, addr, r, fmt.Sprintf("%d.%d.%d", c, w, i)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func request(cl *http.Client, addr string, r *rand.Rand, id string) error {
	base := "http://" + addr
	var req *http.Request
	switch k := r.IntN(10); {
	case k < 5:
		req, _ = http.NewRequest("GET", fmt.Sprintf("%s/items/%d?q=%s&n=%s", base, r.IntN(1000), []string{"a%20b", "caf%C3%A9", "x"}[r.IntN(3)], id), nil)
		req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport then leaves the body encoded
	case k < 7:
		body := fmt.Sprintf(`{"name":"n-%s","notes":"%s"}`, id, strings.Repeat("z", r.IntN(5000)))
		req, _ = http.NewRequest("POST", base+"/items?n="+id, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	case k < 8:
		req, _ = http.NewRequest("PUT", base+"/blobs/"+id, strings.NewReader(strings.Repeat("b", r.IntN(100_000))))
	case k < 9:
		req, _ = http.NewRequest("GET", fmt.Sprintf("%s/big/%d?n=%s", base, 1000+r.IntN(150_000), id), nil)
	default:
		path := []string{"/trailers", "/nothing-here"}[r.IntN(2)]
		req, _ = http.NewRequest("GET", base+path+"?n="+id, nil)
	}
	req.Header.Set("X-Lab-Case", "h2c-prior-knowledge")
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}
