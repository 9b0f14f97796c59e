// Package tcp rebuilds the byte streams of mirrored TCP connections and hands them to a
// per-connection consumer (a Stream). It owns the flow table, LRU and idle eviction,
// out-of-order buffering, retransmission and overlap trimming, the reorder and close
// timeouts and the declaration of gaps. It knows nothing about the protocol the bytes
// carry: a StreamFactory chooses the consumer when a connection's first bytes arrive.
//
// Time advances only with the packet timestamps it is given (and Advance), so replaying a
// capture is deterministic.
package tcp
