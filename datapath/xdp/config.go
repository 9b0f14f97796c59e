package xdp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"

	"github.com/cilium/ebpf"

	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/metlo-labs/metlo-appliance/datapath/sysmem"
)

// Mode is how the program attaches to the interface.
type Mode string

// Attach modes: native runs in the driver (fast, needs driver support), generic runs after the
// kernel built an skb (works everywhere, costs more CPU).
const (
	ModeNative  Mode = "native"
	ModeGeneric Mode = "generic"
)

// Limits of the load-time constants in bpf/capture.c.
const (
	maxTunnelPorts = 4
	maxFilterPorts = 16
	// maxAcceptSources is the size of the accept_sources trie.
	maxAcceptSources = 1024
	// maxAcceptVNIs is the length of the accept_vnis list.
	maxAcceptVNIs = 16
	// MaxCapture is the longest inner frame copied into a ring; longer frames are truncated
	// and counted (reason "truncated").
	MaxCapture = 9216
)

// Config says where and what the XDP source captures. The zero value of each field means
// its documented default, except Raw, which DefaultConfig turns on.
type Config struct {
	Interface   string   // network interface to attach to (required for Open)
	VXLANPorts  []uint16 // UDP ports carrying VXLAN; default 4789
	GENEVEPorts []uint16 // UDP ports carrying GENEVE; default 6081
	// Raw captures TCP frames whose destination is not one of LocalAddrs (GCP Packet
	// Mirroring delivers the original packets unencapsulated).
	Raw bool
	// LocalAddrs are the appliance's own addresses, never captured in raw mode; default:
	// every address configured on the host (a superset of the interface's).
	LocalAddrs []netip.Addr
	// AcceptSources, when set, are the only outer source addresses tunnel packets are
	// taken from; others are dropped and counted (rejected_source). Up to 1024 prefixes.
	AcceptSources []netip.Prefix
	// AcceptVNIs, when set, are the only VNIs taken (for VXLAN inside GENEVE, the VXLAN
	// one); others are dropped and counted (rejected_vni). Up to 16.
	AcceptVNIs []uint32
	TCPOnly    bool     // drop (and count) inner frames that are not TCP
	Ports      []uint16 // if set, keep only inner TCP/UDP frames with one of these ports
	// RingBytes is each CPU's ring size, rounded up to a power of two; 0 picks
	// datapath.AutoRingBytes for the number of CPUs (64 MiB each while that takes at most
	// 1/16 of the memory).
	RingBytes int
	Mode      Mode // default ModeNative
	Logger    *slog.Logger
}

// DefaultConfig returns the defaults for iface: VXLAN 4789, GENEVE 6081, raw mode on, native.
func DefaultConfig(iface string) Config {
	return Config{Interface: iface, Raw: true}
}

// withDefaults fills in defaults and checks the limits the BPF program imposes.
func (c Config) withDefaults() (Config, error) {
	if len(c.VXLANPorts) == 0 {
		c.VXLANPorts = []uint16{4789}
	}
	if len(c.GENEVEPorts) == 0 {
		c.GENEVEPorts = []uint16{6081}
	}
	if c.RingBytes == 0 {
		ncpu, err := ebpf.PossibleCPU()
		if err != nil {
			ncpu = runtime.NumCPU()
		}
		c.RingBytes = datapath.AutoRingBytes(ncpu, sysmem.Available())
	}
	if c.Mode == "" {
		c.Mode = ModeNative
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	if len(c.VXLANPorts) > maxTunnelPorts || len(c.GENEVEPorts) > maxTunnelPorts {
		errs = append(errs, fmt.Errorf("at most %d VXLAN and %d GENEVE ports", maxTunnelPorts, maxTunnelPorts))
	}
	if len(c.Ports) > maxFilterPorts {
		errs = append(errs, fmt.Errorf("at most %d filter ports, got %d", maxFilterPorts, len(c.Ports)))
	}
	for _, list := range [][]uint16{c.VXLANPorts, c.GENEVEPorts, c.Ports} {
		for _, p := range list {
			if p == 0 {
				errs = append(errs, errors.New("port 0 is not a valid port"))
			}
		}
	}
	if len(c.AcceptSources) > maxAcceptSources {
		errs = append(errs, fmt.Errorf("at most %d accepted source prefixes, got %d", maxAcceptSources, len(c.AcceptSources)))
	}
	for _, p := range c.AcceptSources {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("invalid accepted source prefix %v", p))
		}
	}
	if len(c.AcceptVNIs) > maxAcceptVNIs {
		errs = append(errs, fmt.Errorf("at most %d accepted VNIs, got %d", maxAcceptVNIs, len(c.AcceptVNIs)))
	}
	for _, v := range c.AcceptVNIs {
		if v >= 1<<24 {
			errs = append(errs, fmt.Errorf("vni %d does not fit 24 bits", v))
		}
	}
	if c.RingBytes < 4096 || c.RingBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("ring size %d outside 4 KiB..1 GiB", c.RingBytes))
	}
	c.RingBytes = nextPow2(c.RingBytes)
	if c.Mode != ModeNative && c.Mode != ModeGeneric {
		errs = append(errs, fmt.Errorf("unknown mode %q (native|generic)", c.Mode))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("invalid xdp config: %w", err)
	}
	return c, nil
}

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
