package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"

	"github.com/metlo-labs/metlo-appliance/datapath/localaddr"
)

// Objects are the loaded (not attached) capture program and its maps.
type Objects struct {
	Program       *ebpf.Program // xdp_capture
	Baseline      *ebpf.Program // xdp_baseline, only when loaded for benchmarks
	Counters      *ebpf.Map     // per-CPU array indexed by enum counter
	LocalAddrs    *ebpf.Map     // the appliance's own addresses (v4-mapped keys)
	localPrefixes *ebpf.Map     // local routes wider than one address (LPM trie)
	localBits     *ebpf.Map     // local_filter: the bit of every local address, prefix count
	acceptSources *ebpf.Map     // outer source prefixes tunnels are taken from
	Rings         []*ebpf.Map   // one ring buffer per possible CPU
	rings         *ebpf.Map     // the array of ring buffers the program indexes
	labels        []string      // metric label of each counter, from the C enum

	localMu sync.Mutex
	local   localaddr.Set // what the local maps hold
}

// minLocalAddrs is the least room the local-address map has, for addresses added later.
const minLocalAddrs = 1024

// Load verifies and loads the capture program with cfg's constants and map sizes. It never
// attaches: tests run the program with BPF_PROG_RUN, Open attaches it.
func Load(cfg Config) (*Objects, error) {
	return load(cfg, false)
}

func load(cfg Config, withBaseline bool) (*Objects, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkKernel(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, classifyLoad(fmt.Errorf("remove memlock limit: %w", err))
	}
	spec, err := loadCapture()
	if err != nil {
		return nil, err
	}
	labels, err := counterLabels(spec)
	if err != nil {
		return nil, err
	}
	if err := setConstants(spec, cfg); err != nil {
		return nil, err
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count cpus: %w", err)
	}
	ringsSpec := spec.Maps[captureMapRings]
	ringsSpec.MaxEntries = uint32(ncpu)
	ringsSpec.InnerMap.MaxEntries = uint32(cfg.RingBytes)
	spec.Maps[captureMapLocalAddrs].MaxEntries = uint32(max(minLocalAddrs, 2*len(cfg.LocalAddrs)))
	if !withBaseline {
		delete(spec.Programs, captureProgXdpBaseline)
	}

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("verify xdp program: %+v", verr)
		}
		return nil, classifyLoad(fmt.Errorf("load xdp program: %w", err))
	}
	o := &Objects{
		Program:       coll.DetachProgram(captureProgXdpCapture),
		Baseline:      coll.DetachProgram(captureProgXdpBaseline),
		Counters:      coll.DetachMap(captureMapCounters),
		LocalAddrs:    coll.DetachMap(captureMapLocalAddrs),
		localPrefixes: coll.DetachMap(captureMapLocalPrefixes),
		localBits:     coll.DetachMap(captureMapLocalFilter),
		acceptSources: coll.DetachMap(captureMapAcceptSources),
		rings:         coll.DetachMap(captureMapRings),
		labels:        labels,
	}
	coll.Close()
	if err := o.fill(cfg, ncpu, ringsSpec.InnerMap); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

// fill creates the per-CPU rings and stores the local addresses.
func (o *Objects) fill(cfg Config, ncpu int, ringSpec *ebpf.MapSpec) error {
	set := localaddr.Set{Addrs: slices.Clone(cfg.LocalAddrs)}
	for i, a := range set.Addrs {
		set.Addrs[i] = a.Unmap()
	}
	slices.SortFunc(set.Addrs, netip.Addr.Compare)
	set.Addrs = slices.Compact(set.Addrs)
	if err := o.SetLocal(set); err != nil {
		return err
	}
	for _, p := range cfg.AcceptSources {
		if err := o.acceptSources.Put(prefixKey(p), uint8(1)); err != nil {
			return fmt.Errorf("store accepted source %s: %w", p, err)
		}
	}
	for cpu := range ncpu {
		rs := ringSpec.Copy()
		rs.Name = fmt.Sprintf("ring%d", cpu)
		ring, err := ebpf.NewMap(rs)
		if err != nil {
			return classifyLoad(fmt.Errorf("create ring buffer for cpu %d: %w", cpu, err))
		}
		o.Rings = append(o.Rings, ring)
		if err := o.rings.Put(uint32(cpu), ring); err != nil {
			return fmt.Errorf("install ring buffer for cpu %d: %w", cpu, err)
		}
	}
	return nil
}

// localFilter is the Go twin of struct local_filter.
type localFilter struct {
	Bits     [8]uint64
	Prefixes uint32
	_        uint32
}

// SetLocal makes the program treat exactly set's addresses and prefixes as the appliance's
// own, while it runs. Updates are ordered so that no address in either the old or the new
// set is ever captured: additions are stored before the filter admits them to the lookup,
// removals are deleted only after the filter was recomputed without them.
func (o *Objects) SetLocal(set localaddr.Set) error {
	o.localMu.Lock()
	defer o.localMu.Unlock()
	old := o.local
	var filter localFilter
	for _, a := range set.Addrs {
		key := addrKey(a)
		if !slices.Contains(old.Addrs, a) {
			if err := o.LocalAddrs.Put(key, uint8(1)); err != nil {
				return fmt.Errorf("store local address %s: %w", a, err)
			}
		}
		bit := localFilterBit(key)
		filter.Bits[bit/64] |= 1 << (bit % 64)
	}
	for _, p := range set.Prefixes {
		if !slices.Contains(old.Prefixes, p) {
			if err := o.localPrefixes.Put(prefixKey(p), uint8(1)); err != nil {
				return fmt.Errorf("store local route %s: %w", p, err)
			}
		}
	}
	filter.Prefixes = uint32(len(set.Prefixes))
	if err := o.localBits.Put(uint32(0), filter); err != nil {
		return fmt.Errorf("store local address filter: %w", err)
	}
	var errs []error
	for _, a := range old.Addrs {
		if !slices.Contains(set.Addrs, a) {
			if err := o.LocalAddrs.Delete(addrKey(a)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("forget local address %s: %w", a, err))
			}
		}
	}
	for _, p := range old.Prefixes {
		if !slices.Contains(set.Prefixes, p) {
			if err := o.localPrefixes.Delete(prefixKey(p)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("forget local route %s: %w", p, err))
			}
		}
	}
	o.local = set
	return errors.Join(errs...)
}

// Local returns the addresses and prefixes the program currently treats as local.
func (o *Objects) Local() localaddr.Set {
	o.localMu.Lock()
	defer o.localMu.Unlock()
	return o.local
}

// prefixKey is the local_prefixes key of p: IPv4 as v4-mapped IPv6.
func prefixKey(p netip.Prefix) [20]byte {
	var k [20]byte
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	binary.NativeEndian.PutUint32(k[:4], uint32(bits))
	a := addrKey(p.Masked().Addr())
	copy(k[4:], a[:])
	return k
}

// localFilterBit is the Go twin of the program's local_filter_bit: the address's four 32-bit
// words, loaded little endian, XORed and folded to 9 bits.
func localFilterBit(key [16]byte) uint32 {
	x := binary.LittleEndian.Uint32(key[0:]) ^ binary.LittleEndian.Uint32(key[4:]) ^
		binary.LittleEndian.Uint32(key[8:]) ^ binary.LittleEndian.Uint32(key[12:])
	x ^= x >> 16
	x ^= x >> 8
	return x & 511
}

// Close releases the program and maps.
func (o *Objects) Close() error {
	var errs []error
	for _, p := range []*ebpf.Program{o.Program, o.Baseline} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	for _, m := range append([]*ebpf.Map{o.Counters, o.LocalAddrs, o.localPrefixes, o.localBits, o.acceptSources, o.rings}, o.Rings...) {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// addrKey is the local_addrs key of a: IPv4 as v4-mapped IPv6.
func addrKey(a netip.Addr) [16]byte {
	return netip.AddrFrom16(a.As16()).As16()
}

// setConstants writes cfg into the program's volatile const variables.
func setConstants(spec *ebpf.CollectionSpec, cfg Config) error {
	var vxlan, geneve [maxTunnelPorts]uint16
	var filter [maxFilterPorts]uint16
	copy(vxlan[:], cfg.VXLANPorts)
	copy(geneve[:], cfg.GENEVEPorts)
	copy(filter[:], cfg.Ports)
	var vnis [maxAcceptVNIs]uint32
	copy(vnis[:], cfg.AcceptVNIs)
	values := map[string]any{
		captureVarVxlanPorts:      vxlan,
		captureVarGenevePorts:     geneve,
		captureVarRawMode:         boolByte(cfg.Raw),
		captureVarTcpOnly:         boolByte(cfg.TCPOnly),
		captureVarFilterPorts:     filter,
		captureVarFilterPortsLen:  uint32(len(cfg.Ports)),
		captureVarAcceptSourcesOn: boolByte(len(cfg.AcceptSources) > 0),
		captureVarAcceptVnis:      vnis,
		captureVarAcceptVnisLen:   uint32(len(cfg.AcceptVNIs)),
	}
	for name, v := range values {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("set %s: variable missing from program", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// counterLabels derives the metric labels from the C enum counter in the program's BTF, so Go
// can never disagree with C about what an index means.
func counterLabels(spec *ebpf.CollectionSpec) ([]string, error) {
	var enum *btf.Enum
	if err := spec.Types.TypeByName("counter", &enum); err != nil {
		return nil, fmt.Errorf("find enum counter: %w", err)
	}
	labels := make([]string, len(enum.Values)-1)
	for _, v := range enum.Values {
		name := strings.ToLower(strings.TrimPrefix(v.Name, "COUNTER_"))
		if name == "max" {
			continue
		}
		if v.Value >= uint64(len(labels)) {
			return nil, fmt.Errorf("enum counter: %s = %d out of range", v.Name, v.Value)
		}
		labels[v.Value] = name
	}
	return labels, nil
}

// checkKernel fails with ErrKernelTooOld when a feature the program needs is missing.
func checkKernel() error {
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("%w: ring buffer maps: %w", ErrKernelTooOld, err)
		}
		return classifyLoad(fmt.Errorf("probe ring buffer maps: %w", err)) // EPERM: not root
	}
	if err := features.HaveProgramHelper(ebpf.XDP, asm.FnXdpLoadBytes); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("%w: bpf_xdp_load_bytes: %w", ErrKernelTooOld, err)
		}
		return classifyLoad(fmt.Errorf("probe bpf_xdp_load_bytes: %w", err))
	}
	return nil
}
