// Package pcapsrc replays pcap and pcapng files (optionally gzip-compressed, or from
// stdin) as datapath frames, as fast as the reader can go. Every link type the decoder
// reads is accepted (datapath.SupportedLinkTypes); pcapng files may mix interfaces of
// different link types.
package pcapsrc

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/metlo-labs/metlo-appliance/datapath"
)

// readBufferSize is the read-ahead buffer; large enough that a file is read in few syscalls.
const readBufferSize = 256 << 10

// ctxCheckEvery is how many packets pass between cancellation checks.
const ctxCheckEvery = 1024

// Config says which capture file a Source reads.
type Config struct {
	// Path is the capture file; "-" reads standard input.
	Path string
	// Stdin is read when Path is "-"; nil means os.Stdin.
	Stdin io.Reader
	// Reader, when set, is read instead of opening Path (which then only names the input
	// in logs): the caller opened the file, e.g. to count its bytes for progress.
	Reader io.Reader
	// Logger receives the once-per-run warnings (truncated file); nil means slog.Default().
	Logger *slog.Logger
}

// Stats are a Source's counters.
type Stats struct {
	Packets    uint64 // frames handed to the handler
	Bytes      uint64 // captured bytes handed to the handler
	ReadErrors uint64 // truncated or malformed records
}

// Source reads one capture file; it implements datapath.Source.
type Source struct {
	cfg        Config
	log        *slog.Logger
	packets    atomic.Uint64
	bytes      atomic.Uint64
	readErrors atomic.Uint64
}

var _ datapath.Source = (*Source)(nil)

// New returns a Source for cfg; the file is opened by Run.
func New(cfg Config) *Source {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Source{cfg: cfg, log: log.With("source", "pcap", "path", cfg.Path)}
}

// Name returns "pcap".
func (s *Source) Name() string { return "pcap" }

// Stats returns the current counters.
func (s *Source) Stats() Stats {
	return Stats{
		Packets:    s.packets.Load(),
		Bytes:      s.bytes.Load(),
		ReadErrors: s.readErrors.Load(),
	}
}

// packetReader is what pcapgo.Reader and pcapgo.NgReader have in common.
type packetReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Run reads the whole file into one handler and returns nil at its end or on ctx cancel.
// A truncated final record is counted as a read error, not a failure.
func (s *Source) Run(ctx context.Context, newHandler func() datapath.FrameHandler) error {
	var in io.Reader
	if s.cfg.Reader != nil {
		in = s.cfg.Reader
	} else if s.cfg.Path == "-" {
		in = s.cfg.Stdin
		if in == nil {
			in = os.Stdin
		}
	} else {
		f, err := os.Open(s.cfg.Path)
		if err != nil {
			return fmt.Errorf("open capture file: %w", err)
		}
		defer f.Close()
		in = f
	}
	pr, link, ng, err := openReader(in)
	if err != nil {
		return err
	}
	h := newHandler()
	defer h.Flush()
	return s.readAll(ctx, pr, link, ng, h)
}

// openReader detects gzip and pcap/pcapng by their magic numbers, without seeking, and
// checks a pcap file's link type. ng is true for pcapng, whose link type comes with each
// packet (its interface's).
func openReader(in io.Reader) (r packetReader, link datapath.Link, ng bool, err error) {
	br := bufio.NewReaderSize(in, readBufferSize)
	head, err := br.Peek(4)
	if err != nil {
		return nil, 0, false, fmt.Errorf("read capture header: %w", noEOF(err))
	}
	if head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, 0, false, fmt.Errorf("open gzip stream: %w", err)
		}
		br = bufio.NewReaderSize(zr, readBufferSize)
		if head, err = br.Peek(4); err != nil {
			return nil, 0, false, fmt.Errorf("read capture header: %w", noEOF(err))
		}
	}
	switch {
	case head[0] == 0x0a && head[1] == 0x0d && head[2] == 0x0d && head[3] == 0x0a:
		r, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, 0, false, fmt.Errorf("read pcapng header: %w", noEOF(err))
		}
		return r, 0, true, nil
	case isPcapMagic(head):
		r, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, 0, false, fmt.Errorf("read pcap header: %w", noEOF(err))
		}
		lt := r.LinkType()
		link, ok := datapath.LinkFromPcap(uint32(lt))
		if !ok {
			return nil, 0, false, &datapath.LinkTypeError{Name: lt.String(), Type: uint32(lt)}
		}
		return r, link, false, nil
	default:
		return nil, 0, false, fmt.Errorf("unknown capture format: magic %x is neither pcap nor pcapng", head)
	}
}

// isPcapMagic reports whether b starts with a classic pcap magic (µs or ns, either order).
func isPcapMagic(b []byte) bool {
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	switch m {
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
		return true
	}
	return false
}

// noEOF turns an EOF inside a header into ErrUnexpectedEOF so the message says "truncated".
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (s *Source) readAll(ctx context.Context, pr packetReader, link datapath.Link, ng bool, h datapath.FrameHandler) error {
	var frame datapath.Frame
	var warned map[int]bool // pcapng interfaces whose link type was reported unreadable
	for n := 0; ; n++ {
		if n%ctxCheckEvery == 0 && ctx.Err() != nil {
			return nil
		}
		data, ci, err := pr.ZeroCopyReadPacketData()
		if err != nil {
			// A record header with no data behind it comes back as io.EOF from io.ReadFull.
			if err == io.EOF && ci.CaptureLength == 0 {
				return nil
			}
			s.readErrors.Add(1)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				s.log.Warn("capture file ends inside a record; stopping there", "packets", n)
				return nil
			}
			return fmt.Errorf("read capture record %d: %w", n+1, err)
		}
		if ng {
			link = datapath.LinkEthernet
			if len(ci.AncillaryData) > 0 {
				if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
					var known bool
					if link, known = datapath.LinkFromPcap(uint32(lt)); !known && !warned[ci.InterfaceIndex] {
						if warned == nil {
							warned = map[int]bool{}
						}
						warned[ci.InterfaceIndex] = true
						s.log.Warn("pcapng interface has a link type the decoder cannot read; its packets are counted as unknown_link",
							"interface", ci.InterfaceIndex, "link_type", lt.String(), "link_type_value", uint32(lt), "readable", datapath.SupportedLinkTypes)
					}
				}
			}
		}
		frame = datapath.Frame{
			Data:      data,
			WireLen:   ci.Length,
			Timestamp: ci.Timestamp.UnixNano(),
			Link:      link,
		}
		s.packets.Add(1)
		s.bytes.Add(uint64(len(data)))
		h.HandleFrame(&frame)
	}
}
