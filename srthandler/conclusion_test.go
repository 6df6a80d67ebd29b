package srthandler_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Conclusions whose extensions are not shaped as real callers send them
// (a 16-byte HSREQ, which gosrt origins drop without a word; a response
// block in a request; a KMREQ whose key length lies) reach no origin and
// hold no handshake slot: the caller is told bad_request (1400) at once,
// and the next caller from the same IP, with one slot per IP, gets in.
func TestMalformedConclusionsReachNoOrigin(t *testing.T) {
	b := startBackend(t, "b")
	relay := testpeer.NewRelay(t, b.Addr())
	p := testpeer.StartProxy(t, map[string]any{
		"max_pending_per_ip": 1,
		"routes":             []any{map[string]any{"to": to(relay.Addr)}},
	}, testpeer.Options{})
	hsreq := func(n int) []byte { return wire.AppendExtension(nil, wire.ExtHSREQ, make([]byte, n)) }
	sid := wire.AppendExtension(nil, wire.ExtSID, wire.AppendStreamID(nil, "live/x"))
	shapes := map[string]struct {
		flags uint16
		ext   []byte
	}{
		"16-byte HSREQ":      {wire.ExtFlagHSREQ | wire.ExtFlagCONFIG, append(hsreq(16), sid...)},
		"HSRSP in a request": {wire.ExtFlagHSREQ | wire.ExtFlagCONFIG, append(append(hsreq(12), wire.AppendExtension(nil, wire.ExtHSRSP, make([]byte, 12))...), sid...)},
		"KMREQ lying": {wire.ExtFlagHSREQ | wire.ExtFlagKMREQ | wire.ExtFlagCONFIG,
			append(append(hsreq(12), wire.AppendExtension(nil, wire.ExtKMREQ, []byte{0x12, 0x20, 0x29, 0x01, 0, 0, 0, 0, 2, 0, 2, 0, 0, 0, 4, 0x3f})...), sid...)},
	}
	for name, shape := range shapes {
		c := testpeer.NewRawCaller(t, p.Addr, 77)
		c.Send(c.Induction())
		ind, err := wire.ParseHandshake(c.Recv(2 * time.Second))
		if err != nil {
			t.Fatalf("%s: no induction response: %v", name, err)
		}
		hs, err := wire.ParseHandshake(c.Conclusion(5, ind.Cookie, "live/x"))
		if err != nil {
			t.Fatal(err)
		}
		hs.ExtField, hs.Extensions = shape.flags, shape.ext
		start := time.Now()
		c.Send(hs.Append(nil))
		resp, err := wire.ParseHandshake(c.Recv(2 * time.Second))
		if err != nil || !resp.Type.IsRejection() || resp.Type.Reason() != wire.RejXBadRequest {
			t.Errorf("%s: got %v (%v), want bad_request (1400)", name, resp.Type, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("%s: answered after %v", name, d)
		}
	}
	if n := relay.Seen(); n != 0 {
		t.Errorf("malformed conclusions sent %d datagrams towards the origin", n)
	}
	c := testpeer.NewRawCaller(t, p.Addr, 78)
	resp, err := wire.ParseHandshake(c.Handshake(5, "live/y", 2*time.Second))
	if err != nil || resp.Type != wire.HSConclusion {
		t.Fatalf("a valid caller after the malformed ones: %v (%v)", resp.Type, err)
	}
	c.Send(wire.AppendShutdown(nil, resp.SocketID, 1))
	caller, _ := session.KeyOf(c.Conn.RemoteAddr(), c.Conn.LocalAddr())
	waitFor(t, 2*time.Second, "the valid caller's session to end", func() bool { return session.Default.Lookup(caller) == nil })
}

// An upstream that answers our inductions but never this caller's
// conclusion gets a bounded replay: the caller is told gateway (1502)
// well before handshake_timeout, so its slot is free early, and what the
// upstream was sent stays a few datagrams whatever the timeout.
func TestUnansweredConclusionIsBounded(t *testing.T) {
	b := startBackend(t, "b")
	relay := testpeer.NewRelay(t, b.Addr())
	var toBackend, bytesToBackend atomic.Int64
	relay.SetDrop(func(toward bool, p []byte) bool {
		if !toward {
			return false
		}
		toBackend.Add(1)
		bytesToBackend.Add(int64(len(p)))
		typ, ok := wire.HandshakeTypeOf(p)
		return ok && typ == wire.HSConclusion
	})
	p := testpeer.StartProxy(t, map[string]any{
		"handshake_timeout": "2500ms",
		"routes":            []any{map[string]any{"to": to(relay.Addr)}},
	}, testpeer.Options{})
	c := testpeer.NewRawCaller(t, p.Addr, 91)
	c.Send(c.Induction())
	ind, err := wire.ParseHandshake(c.Recv(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	conclusion := c.Conclusion(5, ind.Cookie, "live/ignored")
	start := time.Now()
	c.Send(conclusion)
	resp, err := wire.ParseHandshake(c.Recv(3 * time.Second))
	took := time.Since(start)
	if err != nil || !resp.Type.IsRejection() || resp.Type.Reason() != wire.RejXGateway {
		t.Fatalf("got %v (%v), want gateway (1502)", resp.Type, err)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("answered after %v; the upstream had stopped answering long before handshake_timeout (2.5s)", took)
	}
	// Two fresh starts: an induction and two conclusions each.
	if n, sent := toBackend.Load(), bytesToBackend.Load(); n > 6 || sent > int64(2*(wire.HandshakeLen+2*len(conclusion))) {
		t.Errorf("the upstream was sent %d datagrams, %d bytes, for one %d-byte conclusion", n, sent, len(conclusion))
	}
	t.Logf("gateway after %v; upstream sent %d datagrams, %d bytes", took.Round(time.Millisecond), toBackend.Load(), bytesToBackend.Load())
}
