package synth

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// WriteHalfOpenFlood writes, straight to a pcap, flows connections that each send a
// request announcing a 64 KiB body and then only body bytes of it, never finishing, never
// answered and never closed: every one stays open holding state and a partial body, the
// worst case for the collector's memory. It streams, so millions of flows need no memory.
func WriteHalfOpenFlood(w io.Writer, flows, bodyBytes int) error {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	fb := frameBuilder{vni: 4242}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write := func(f []byte) error {
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f)}
		ts = ts.Add(time.Microsecond)
		return pw.WritePacket(ci, f)
	}
	req := []byte(fmt.Sprintf("POST /api/v1/upload HTTP/1.1\r\nHost: api.internal\r\nContent-Type: application/octet-stream\r\n"+
		"Content-Length: 65536\r\n\r\n%s", strings.Repeat("u", bodyBytes)))
	for i := range flows {
		cli := [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
		srv := [4]byte{10, 200, 0, byte(i % 7)}
		cport := uint16(1024 + i%60000)
		cseq, sseq := uint32(i)*7919, uint32(i)*104729
		for _, f := range [][]byte{
			fb.frame(cli, srv, cport, 8080, cseq, 0, 0x02, nil),
			fb.frame(srv, cli, 8080, cport, sseq, cseq+1, 0x12, nil),
			fb.frame(cli, srv, cport, 8080, cseq+1, sseq+1, 0x18, req),
		} {
			if err := write(f); err != nil {
				return err
			}
		}
	}
	return nil
}
