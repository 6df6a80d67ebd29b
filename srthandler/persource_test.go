package srthandler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// One IP opening sessions beyond max_sessions_per_ip gets overload
// (1402); other IPs are served, and a session that ends frees its place.
func TestMaxSessionsPerIP(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"max_sessions_per_ip": 3,
		"routes":              []any{map[string]any{"to": to(b.Addr())}},
	}, testpeer.Options{})
	type live struct {
		c  *testpeer.RawCaller
		up uint32
	}
	var sessions []live
	defer func() {
		for _, s := range sessions {
			s.c.Send(wire.AppendShutdown(nil, s.up, 1))
		}
		waitFor(t, 3*time.Second, "the sessions to end", func() bool { return session.Default.Len() == 0 })
	}()
	open := func(from string, id uint32) (wire.HandshakeType, wire.RejectReason) {
		t.Helper()
		c := testpeer.NewRawCallerFrom(t, from, p.Addr, id)
		resp := c.Handshake(5, fmt.Sprintf("#!::r=live/%d,m=publish", id), 2*time.Second)
		hs, err := wire.ParseHandshake(resp)
		if err != nil {
			t.Fatalf("caller %d from %s: no answer to its conclusion: %v", id, from, err)
		}
		if hs.Type == wire.HSConclusion {
			sessions = append(sessions, live{c, hs.SocketID})
			return hs.Type, 0
		}
		return hs.Type, hs.Type.Reason()
	}
	for i := range 3 {
		if typ, _ := open("127.0.0.1:0", uint32(100+i)); typ != wire.HSConclusion {
			t.Fatalf("caller %d of 3 from 127.0.0.1: %v", i+1, typ)
		}
	}
	if typ, reason := open("127.0.0.1:0", 200); !typ.IsRejection() || reason != wire.RejXOverload {
		t.Errorf("fourth caller from 127.0.0.1: got %v (%v), want overload (1402)", typ, reason)
	}
	if typ, _ := open("127.0.0.3:0", 300); typ != wire.HSConclusion {
		t.Errorf("a caller from 127.0.0.3: %v, want a session", typ)
	}
	// One of 127.0.0.1's sessions ends: its place is free again.
	first := sessions[0]
	sessions = sessions[1:]
	first.c.Send(wire.AppendShutdown(nil, first.up, 1))
	caller, _ := session.KeyOf(first.c.Conn.RemoteAddr(), first.c.Conn.LocalAddr())
	waitFor(t, 2*time.Second, "the first session to end", func() bool { return session.Default.Lookup(caller) == nil })
	if typ, _ := open("127.0.0.1:0", 400); typ != wire.HSConclusion {
		t.Errorf("a caller from 127.0.0.1 after one of its sessions ended: %v, want a session", typ)
	}
}

// A source's conclusions beyond handshake_rate_per_ip get overload (1402)
// before any upstream is tried; another source is not affected.
func TestHandshakeRatePerIP(t *testing.T) {
	b := startBackend(t, "b")
	relay := testpeer.NewRelay(t, b.Addr())
	p := testpeer.StartProxy(t, map[string]any{
		"handshake_rate_per_ip": 2,
		"routes":                []any{map[string]any{"reject": "forbidden", "resource": []string{"denied/*"}}, map[string]any{"to": to(relay.Addr)}},
	}, testpeer.Options{})
	reason := func(from, streamID string, id uint32) wire.RejectReason {
		t.Helper()
		c := testpeer.NewRawCallerFrom(t, from, p.Addr, id)
		hs, err := wire.ParseHandshake(c.Handshake(5, streamID, 2*time.Second))
		if err != nil || !hs.Type.IsRejection() {
			t.Fatalf("caller %d from %s: %v (%v), want a rejection", id, from, hs.Type, err)
		}
		return hs.Type.Reason()
	}
	// The rate table is the process's, shared by every test: drain a
	// source no other test calls from, not 127.0.0.1, whose empty bucket
	// would refuse the next test's burst of callers.
	const drained = "127.0.0.5:0"
	// Two conclusions at once pass (and are refused by their route)...
	for i := range 2 {
		if r := reason(drained, "denied/x", uint32(10+i)); r != wire.RejXForbidden {
			t.Errorf("conclusion %d of 2: %v, want forbidden", i+1, r)
		}
	}
	// ...the third is over the rate: no upstream is tried.
	seen := relay.Seen()
	if r := reason(drained, "live/x", 12); r != wire.RejXOverload {
		t.Errorf("third conclusion at once: %v, want overload (1402)", r)
	}
	if relay.Seen() != seen {
		t.Errorf("a conclusion over the rate reached the upstream")
	}
	if r := reason("127.0.0.4:0", "denied/y", 13); r != wire.RejXForbidden {
		t.Errorf("a conclusion from 127.0.0.4: %v, want forbidden (its own budget)", r)
	}
	// Half a second later, one more is allowed again.
	time.Sleep(600 * time.Millisecond)
	if r := reason(drained, "denied/z", 14); r != wire.RejXForbidden {
		t.Errorf("a conclusion after the budget refilled: %v, want forbidden", r)
	}
}
