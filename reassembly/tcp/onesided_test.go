package tcp

import (
	"testing"
	"time"
)

// TestOneSidedConnectionsAreCounted ends connections in every way a connection ends —
// FINs, reset, idle eviction, flow-table eviction, flush at shutdown — some with both
// directions seen and some with one only, and checks that exactly the one-sided ones are
// counted, once each, next to every connection that ended.
func TestOneSidedConnectionsAreCounted(t *testing.T) {
	cfg := Config{IdleTimeout: 10 * time.Second, MaxFlows: 4}
	// Both directions, closed by FINs: not one-sided.
	l := newLink(t, cfg, 1<<20)
	l.handshake()
	l.send(l.seg(true, 0, "GET / HTTP/1.1\r\n\r\n"), l.seg(false, 0, "HTTP/1.1 200 OK\r\n\r\n"), l.seg(true, FlagFIN, ""), l.seg(false, FlagFIN, ""))
	l.a.FlushAll()
	if s := l.a.Stats(); s.Ended != 1 || s.OneSided != 0 {
		t.Errorf("two-sided connection: ended %d one-sided %d, want 1 and 0", s.Ended, s.OneSided)
	}

	// Requests only (the server's direction goes to another appliance), ended by FIN.
	l = newLink(t, cfg, 1<<20)
	syn := l.seg(true, FlagSYN, "")
	syn.Flags = FlagSYN
	l.send(syn, l.seg(true, 0, "GET /a HTTP/1.1\r\n\r\n"), l.seg(true, 0, "GET /b HTTP/1.1\r\n\r\n"), l.seg(true, FlagFIN, ""))
	l.a.FlushAll()
	if s := l.a.Stats(); s.Ended != 1 || s.OneSided != 1 {
		t.Errorf("client-only connection: ended %d one-sided %d, want 1 and 1", s.Ended, s.OneSided)
	}

	// Responses only, mid-connection, ended by idle eviction.
	l = newLink(t, cfg, 1<<20)
	l.send(l.seg(false, 0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	l.ts += int64(time.Minute)
	l.a.Advance(l.ts)
	if s := l.a.Stats(); s.Ended != 1 || s.OneSided != 1 || s.FlowsEvicted != 1 {
		t.Errorf("server-only idle connection: ended %d one-sided %d evicted %d, want 1, 1, 1", s.Ended, s.OneSided, s.FlowsEvicted)
	}

	// A flow table of 4: five one-sided connections evict the oldest; the rest end at
	// shutdown. A late copy of an ended connection's segment is not a new end.
	l = newLink(t, cfg, 1<<20)
	for i := range 5 {
		l.cli.Port = uint16(41000 + i)
		l.send(l.seg(true, 0, "GET / HTTP/1.1\r\n\r\n"))
	}
	l.a.FlushAll()
	if s := l.a.Stats(); s.Ended != 5 || s.OneSided != 5 || s.Drops[DropFlowTableFull] != 1 {
		t.Errorf("table-full and flushed: ended %d one-sided %d table-full %d, want 5, 5, 1", s.Ended, s.OneSided, s.Drops[DropFlowTableFull])
	}

	// A reset ends a two-sided connection: counted as ended, not one-sided.
	l = newLink(t, cfg, 1<<20)
	l.handshake()
	l.send(l.seg(false, FlagRST, ""))
	l.ts += int64(time.Minute)
	l.a.Advance(l.ts)
	if s := l.a.Stats(); s.Ended != 1 || s.OneSided != 0 {
		t.Errorf("reset: ended %d one-sided %d, want 1 and 0", s.Ended, s.OneSided)
	}
}
