package xdp

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/metlo-labs/metlo-appliance/datapath"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The metric labels come from the C enum; this keeps the generated Go constants, the labels
// and the counters map in step with it.
func TestCounterLabelsFollowTheEnum(t *testing.T) {
	spec, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	labels, err := counterLabels(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"received", "vxlan", "geneve", "geneve_vxlan", "raw", "passed", "non_tcp",
		"filtered", "malformed", "ringbuf_full", "truncated", "rejected_source", "rejected_vni", "whole",
		"fragment", "fragment_shared"}
	if !slices.Equal(labels, want) {
		t.Errorf("labels = %v, want %v", labels, want)
	}
	if int(captureCounterCOUNTER_MAX) != len(labels) {
		t.Errorf("COUNTER_MAX = %d, %d labels", captureCounterCOUNTER_MAX, len(labels))
	}
	if got := spec.Maps[captureMapCounters].MaxEntries; got != uint32(len(labels)) {
		t.Errorf("counters map has %d entries, enum %d", got, len(labels))
	}
	for i, l := range labels {
		if l == "" || strings.ContainsAny(l, " -") {
			t.Errorf("label %d = %q", i, l)
		}
	}
}

// The record header and encap values are read by hand on the hot path; check them against
// what bpf2go generated from the C structs.
func TestRecordLayoutMatchesC(t *testing.T) {
	var m captureFrameMeta
	if unsafe.Sizeof(m) != metaSize {
		t.Errorf("sizeof(frame_meta) = %d, want %d", unsafe.Sizeof(m), metaSize)
	}
	offsets := map[string][2]uintptr{
		"timestamp": {unsafe.Offsetof(m.Timestamp), 0},
		"wire_len":  {unsafe.Offsetof(m.WireLen), 8},
		"vni":       {unsafe.Offsetof(m.Vni), 12},
		"cap_len":   {unsafe.Offsetof(m.CapLen), 16},
		"data_off":  {unsafe.Offsetof(m.DataOff), 18},
		"encap":     {unsafe.Offsetof(m.Encap), 20},
		"flags":     {unsafe.Offsetof(m.Flags), 21},
	}
	for name, o := range offsets {
		if o[0] != o[1] {
			t.Errorf("offset of %s = %d, decodeRecord reads %d", name, o[0], o[1])
		}
	}
	pairs := map[captureEncap]datapath.Encap{
		captureEncapENCAP_RAW:          datapath.EncapRaw,
		captureEncapENCAP_VXLAN:        datapath.EncapVXLAN,
		captureEncapENCAP_GENEVE:       datapath.EncapGENEVE,
		captureEncapENCAP_GENEVE_VXLAN: datapath.EncapGENEVEVXLAN,
	}
	for c, g := range pairs {
		if uint32(c) != uint32(g) {
			t.Errorf("C encap %d != datapath.Encap %v (%d)", c, g, g)
		}
	}
	spec, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	var enum *btf.Enum
	if err := spec.Types.TypeByName("encap", &enum); err != nil {
		t.Fatal(err)
	}
	if len(enum.Values) != len(pairs) {
		t.Errorf("C enum encap has %d values, Go knows %d", len(enum.Values), len(pairs))
	}
}

func TestCollectorSumsCPUs(t *testing.T) {
	h := newHarness(t, Config{Raw: true, LocalAddrs: []netip.Addr{applianceV4}})
	for range 3 {
		h.run(t, h.objs.Program, vxlanFrame(t, mirrorV4, applianceV4, 1, tcpFrame(t, clientV4, serverV4, 1, 80, "x")))
	}
	h.run(t, h.objs.Program, tcpFrame(t, clientV4, applianceV4, 1, 22, "ssh"))
	want := `
# HELP metlo_appliance_xdp_packets_total Packets seen by the XDP capture program, by outcome (received counts every packet; truncated marks captured frames shorter than on the wire).
# TYPE metlo_appliance_xdp_packets_total counter
metlo_appliance_xdp_packets_total{reason="filtered"} 0
metlo_appliance_xdp_packets_total{reason="fragment"} 0
metlo_appliance_xdp_packets_total{reason="fragment_shared"} 0
metlo_appliance_xdp_packets_total{reason="geneve"} 0
metlo_appliance_xdp_packets_total{reason="geneve_vxlan"} 0
metlo_appliance_xdp_packets_total{reason="malformed"} 0
metlo_appliance_xdp_packets_total{reason="non_tcp"} 0
metlo_appliance_xdp_packets_total{reason="passed"} 1
metlo_appliance_xdp_packets_total{reason="raw"} 0
metlo_appliance_xdp_packets_total{reason="received"} 4
metlo_appliance_xdp_packets_total{reason="rejected_source"} 0
metlo_appliance_xdp_packets_total{reason="rejected_vni"} 0
metlo_appliance_xdp_packets_total{reason="ringbuf_full"} 0
metlo_appliance_xdp_packets_total{reason="truncated"} 0
metlo_appliance_xdp_packets_total{reason="vxlan"} 3
metlo_appliance_xdp_packets_total{reason="whole"} 0
`
	if err := testutil.CollectAndCompare(NewCollector(h.objs), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestRingFullIsCountedNotBlocking(t *testing.T) {
	h := newHarness(t, Config{Raw: true, RingBytes: 4096})
	frame := vxlanFrame(t, mirrorV4, applianceV4, 1, tcpFrame(t, clientV4, serverV4, 1, 80, strings.Repeat("y", 900)))
	for range 8 { // 954 B inner frames take 1152-byte slots: a 4 KiB ring holds 3 until someone reads it
		action, err := h.objs.Program.Run(&ebpf.RunOptions{Data: frame})
		if err != nil || action != actDrop {
			t.Fatalf("run: action %d, %v; want drop", action, err)
		}
	}
	c := h.counters(t)
	if c["received"] != 8 || c["vxlan"] != 3 || c["ringbuf_full"] != 5 {
		t.Errorf("received %d vxlan %d ringbuf_full %d, want 8, 3, 5", c["received"], c["vxlan"], c["ringbuf_full"])
	}
	if recs := h.drain(t); len(recs) != 3 {
		t.Errorf("%d records in the rings, want 3", len(recs))
	}
}
