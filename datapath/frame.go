// Package datapath gets mirrored frames off the wire (pcap, AF_PACKET, UDP sockets, XDP),
// strips their tunnels and shards the TCP segments inside over reassembly workers.
package datapath

import "context"

// Encap says how a frame reached the appliance.
type Encap uint8

// Encapsulations, in the order the metrics label them.
const (
	EncapRaw         Encap = iota // no tunnel (GCP Packet Mirroring)
	EncapVXLAN                    // VXLAN, UDP 4789 (AWS VPC Traffic Mirroring)
	EncapGENEVE                   // GENEVE, UDP 6081 (AWS GWLB)
	EncapGENEVEVXLAN              // VXLAN nested inside GENEVE (mirror target behind a GWLB endpoint)
)

var encapNames = [...]string{"raw", "vxlan", "geneve", "geneve_vxlan"}

// String returns the metric label of e.
func (e Encap) String() string {
	if int(e) < len(encapNames) {
		return encapNames[e]
	}
	return "unknown"
}

// Frame is one captured frame. Data aliases the source's buffer and is valid only during
// the HandleFrame call that carries it.
type Frame struct {
	Data      []byte
	WireLen   int   // length on the wire; > len(Data) when the capture was truncated
	Timestamp int64 // Unix nanoseconds; 0 means "now" and the handler fills it in
	// Decapsulated is set by sources that already stripped the tunnel (XDP, UDP sockets):
	// Data then starts at the inner frame, and Encap/Tunnel describe the tunnel.
	Decapsulated bool
	// TunnelPayload is set by sources that receive the tunnel over a UDP socket: Data starts
	// at the VXLAN or GENEVE header named by Encap (the kernel already removed outer L2-L4).
	TunnelPayload bool
	InnerIsIP     bool // with Decapsulated: Data starts at an IP header, not Ethernet
	Encap         Encap
	Tunnel        uint32 // VNI with Decapsulated
}

// FrameHandler consumes the frames of one source goroutine; it is never shared between
// goroutines, so it may batch without locks.
type FrameHandler interface {
	HandleFrame(f *Frame)
	// Flush hands on anything batched. Sources call it when their input goes quiet (a poll
	// timeout, an empty ring) and before Run returns, so no frame waits for a full batch.
	Flush()
}

// Source produces frames until its input ends (pcap) or ctx is cancelled (live capture).
type Source interface {
	// Name is a short label for logs and metrics ("pcap", "afpacket", "udp", "xdp").
	Name() string
	// Run calls newHandler once for each goroutine it delivers frames from and returns nil
	// at the end of input or when ctx is cancelled.
	Run(ctx context.Context, newHandler func() FrameHandler) error
}
