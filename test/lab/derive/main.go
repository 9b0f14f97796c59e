// Command derive turns the lab's VXLAN capture into the other encapsulations a collector
// meets (GENEVE with AWS-style options, GENEVE carrying IP, VXLAN inside GENEVE, VXLAN over
// IPv6, an 802.1Q-tagged outer frame, the bare inner frames) and into the impairments clouds
// add (reordering, duplicates, both ends of a connection mirrored), plus a pcapng copy.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// frame is one captured frame with its capture time.
type frame struct {
	ts   time.Time
	data []byte
}

// variant writes one derived capture.
type variant struct {
	name string
	make func([]vxFrame, uint64) ([]frame, error)
}

var variants = []variant{
	{"geneve", toGENEVEEthernet},
	{"geneve_ip", toGENEVEIP},
	{"vxlan_in_geneve", toVXLANInGENEVE},
	{"vxlan_ipv6", toVXLANIPv6},
	{"vlan", toVLAN},
	{"stripped", toStripped},
	{"reordered", toReordered},
	{"dual_eni", toDualENI},
}

func main() {
	in := flag.String("in", "testdata/lab/vxlan.pcap", "VXLAN capture to derive from")
	out := flag.String("out", "testdata/lab", "output directory")
	only := flag.String("only", "", "comma-separated variants to write (default: all, plus the pcapng copy)")
	seed := flag.Uint64("seed", 1, "seed for reordering and duplication")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*in, *out, *only, *seed, log); err != nil {
		log.Error("derive failed", "err", err)
		os.Exit(1)
	}
}

func run(in, out, only string, seed uint64, log *slog.Logger) error {
	frames, err := readPcap(in)
	if err != nil {
		return err
	}
	vx, err := parseVXLAN(frames)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n != "" {
			want[n] = true
		}
	}
	for _, v := range variants {
		if len(want) > 0 && !want[v.name] {
			continue
		}
		derived, err := v.make(vx, seed)
		if err != nil {
			return fmt.Errorf("derive %s: %w", v.name, err)
		}
		path := filepath.Join(out, v.name+".pcap")
		if err := writePcap(path, derived); err != nil {
			return err
		}
		log.Info("wrote", "variant", v.name, "frames", len(derived), "path", path)
	}
	if len(want) == 0 || want["pcapng"] {
		path := filepath.Join(out, "vxlan.pcapng")
		if err := writePcapng(path, frames); err != nil {
			return err
		}
		log.Info("wrote", "variant", "pcapng", "frames", len(frames), "path", path)
	}
	return nil
}

func readPcap(path string) ([]frame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read capture header: %w", err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("capture link type %v, want Ethernet", r.LinkType())
	}
	var out []frame
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("read capture: %w", err)
		}
		if ci.CaptureLength != ci.Length {
			return nil, fmt.Errorf("frame at %v truncated by the capture (%d of %d bytes)", ci.Timestamp, ci.CaptureLength, ci.Length)
		}
		out = append(out, frame{ts: ci.Timestamp, data: append([]byte(nil), data...)})
	}
	return out, nil
}

func writePcap(path string, frames []frame) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	w := pcapgo.NewWriterNanos(f)
	err = w.WriteFileHeader(262144, layers.LinkTypeEthernet)
	for _, fr := range frames {
		if err != nil {
			break
		}
		err = w.WritePacket(gopacket.CaptureInfo{Timestamp: fr.ts, CaptureLength: len(fr.data), Length: len(fr.data)}, fr.data)
	}
	return errors.Join(err, f.Close())
}

func writePcapng(path string, frames []frame) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	for _, fr := range frames {
		if err != nil {
			break
		}
		err = w.WritePacket(gopacket.CaptureInfo{Timestamp: fr.ts, CaptureLength: len(fr.data), Length: len(fr.data), InterfaceIndex: 0}, fr.data)
	}
	if err == nil {
		err = w.Flush()
	}
	return errors.Join(err, f.Close())
}
