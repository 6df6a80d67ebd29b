package srthandler_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// A conclusion whose cookie this process did not issue to that address
// must cost nothing: no answer, no upstream socket, no backend traffic.
func TestForgedCookieReachesNoBackend(t *testing.T) {
	b := startBackend(t, "b")
	relay := testpeer.NewRelay(t, b.Addr())
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{"to": to(relay.Addr)}},
	}, testpeer.Options{})

	// A cookie issued to another caller address is as good as forged.
	other := testpeer.NewRawCaller(t, p.Addr, 7)
	other.Send(other.Induction())
	resp, err := wire.ParseHandshake(other.Recv(time.Second))
	if err != nil || resp.Cookie == 0 {
		t.Fatalf("no induction response: %v", err)
	}

	sockets := testpeer.OpenSockets(t)
	c := testpeer.NewRawCaller(t, p.Addr, 42)
	for _, cookie := range []uint32{0, 0xdeadbeef, resp.Cookie, resp.Cookie + 1} {
		for range 5 {
			c.Send(c.Conclusion(5, cookie, "live/forged"))
		}
		if got := c.Recv(300 * time.Millisecond); got != nil {
			t.Errorf("cookie %#x: proxy answered a forged conclusion with %x", cookie, got)
		}
	}
	if n := relay.Seen(); n != 0 {
		t.Errorf("forged conclusions sent %d datagrams towards the backend", n)
	}
	// The raw caller itself holds one socket.
	if n := testpeer.OpenSockets(t); n != sockets+1 {
		t.Errorf("open sockets went from %d to %d", sockets, n)
	}
	// A real caller still gets through.
	conn, err := testpeer.Dial(p.Addr, "live/real", testpeer.DialOptions{})
	if err != nil {
		t.Fatalf("valid caller after forged conclusions: %v", err)
	}
	conn.Close()
	if relay.Seen() == 0 {
		t.Error("the valid caller did not reach the backend")
	}
}

// caddy-l4 v0.1.2 spins when a matcher Reads a first datagram over 2048
// bytes; the srt matcher must say "no match" at once, and the caller's
// next datagram must be served.
func TestOversizedFirstDatagram(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{"to": to(b.Addr())}},
	}, testpeer.Options{})
	for _, size := range []int{1501, 2048, 2049, 4000, 8999} {
		c := testpeer.NewRawCaller(t, p.Addr, 99)
		big := c.Induction()
		big = append(big, bytes.Repeat([]byte{0}, size-len(big))...)
		c.Send(big)
		if got := c.Recv(200 * time.Millisecond); got != nil {
			t.Errorf("%d bytes: proxy answered an oversized datagram", size)
		}
		// Had the matcher spun, this caller's association would be stuck
		// and this induction never answered (caddy-l4 gives up matching
		// after 3 s, so 2 s tells the two apart).
		c.Send(c.Induction())
		resp, err := wire.ParseHandshake(c.Recv(2 * time.Second))
		if err != nil || resp.Type != wire.HSInduction {
			t.Fatalf("%d bytes: the next induction from the same caller was not answered: %v", size, err)
		}
	}
}

// HSv4 callers carry no stream ID: only a catch-all route serves them,
// and their rejection is a SHUTDOWN, the only refusal they understand.
func TestHSv4CallerCatchAll(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			map[string]any{"resource": []string{"live/*"}, "reject": "forbidden"},
			map[string]any{"to": to(b.Addr())},
		},
	}, testpeer.Options{})
	c := testpeer.NewRawCaller(t, p.Addr, 1234)
	resp, err := wire.ParseHandshake(c.Handshake(4, "", time.Second))
	if err != nil || resp.Type != wire.HSConclusion || resp.Version != 4 || resp.Header.DestSocket != 1234 {
		t.Fatalf("HSv4 caller got %+v, %v; want the backend's v4 conclusion response", resp, err)
	}
	waitFor(t, 2*time.Second, "the backend's HSv4 connection", func() bool { return len(b.Conns()) == 1 })
	if id := b.Conns()[0].StreamID; id != "" {
		t.Errorf("backend saw stream ID %q", id)
	}
}

func TestHSv4CallerRejected(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{"resource": []string{"live/*"}, "to": to(b.Addr())}},
	}, testpeer.Options{})
	c2 := testpeer.NewRawCaller(t, p.Addr, 5678)
	got := c2.Handshake(4, "", time.Second)
	if !wire.IsShutdown(got) || wire.DestSocketOf(got) != 5678 {
		t.Fatalf("rejected HSv4 caller got %x, want a SHUTDOWN to its socket", got)
	}
}
