// Command synthcap writes a synthetic VXLAN mirror capture of keep-alive HTTP API traffic
// (HTTP/1.1, or cleartext HTTP/2 with -http2), used to compare the collector with other
// tools (tshark) on identical input.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/metlo-labs/metlo-appliance/test/synth"
)

func main() {
	conns := flag.Int("conns", 500, "connections")
	per := flag.Int("exchanges", 40, "exchanges per connection")
	out := flag.String("o", "synthetic.pcap", "output pcap")
	body := flag.Int("body", 0, "response body bytes (0: mixed API sizes, 100 B to 2 KB)")
	halfOpen := flag.Int("half-open", 0, "instead: this many connections that never finish a request (memory flood)")
	h2 := flag.Int("http2", 0, "cleartext HTTP/2 with prior knowledge instead, this many streams in flight per connection")
	flag.Parse()
	if *halfOpen > 0 {
		if err := writeFlood(*out, *halfOpen, max(*body, 900)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%s: %d half-open connections\n", *out, *halfOpen)
		return
	}
	size := synth.MixedAPI
	if *body > 0 {
		size = func(*rand.Rand) int { return *body }
	}
	c := synth.Build(*conns, *per, size)
	if *h2 > 0 {
		c = synth.BuildHTTP2(*conns, *per, *h2, size)
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(f)
	err = c.WritePcap(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d frames, %d bytes, %d exchanges\n", *out, len(c.Frames), c.Bytes, c.Exchanges)
}

func writeFlood(path string, flows, body int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = synth.WriteHalfOpenFlood(w, flows, body)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
