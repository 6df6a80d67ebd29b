package srthandler_test

import (
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

func TestRejections(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			map[string]any{"user": []string{"mallory"}, "reject": "forbidden"},
			map[string]any{"resource": []string{"paid/*"}, "reject": 2401},
			map[string]any{"resource": []string{"live/*"}, "to": to(b.Addr())},
		},
	}, testpeer.Options{})

	for _, c := range []struct {
		id   string
		want uint32
	}{
		{"#!::u=mallory,r=live/x", 1403},
		{"#!::r=paid/match", 2401},
		{"#!::r=nowhere/x", 1404},
		{"", 1404},
	} {
		start := time.Now()
		_, err := testpeer.Dial(p.Addr, c.id, testpeer.DialOptions{})
		took := time.Since(start)
		got, ok := testpeer.RejectReason(err)
		if !ok || got != c.want {
			t.Errorf("stream ID %q: got %v (reason %d, %v), want rejection %d", c.id, err, got, ok, c.want)
		}
		if took > 500*time.Millisecond {
			t.Errorf("stream ID %q: rejection took %v", c.id, took)
		}
	}
	if n := len(b.Conns()); n != 0 {
		t.Errorf("backend saw %d connections from rejected callers", n)
	}
}

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

// A caller that keeps sending after its session ended gets no new session
// and costs no upstream socket.
func TestEndedSessionStaysEnded(t *testing.T) {
	b := startBackend(t, "b")
	relay := testpeer.NewRelay(t, b.Addr())
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{"to": to(relay.Addr)}},
	}, testpeer.Options{})
	c := testpeer.NewRawCaller(t, p.Addr, 777)
	resp, err := wire.ParseHandshake(c.Handshake(5, "live/zombie", time.Second))
	if err != nil || resp.Type != wire.HSConclusion {
		t.Fatalf("no conclusion response: %v", err)
	}
	upstreamSocket := resp.SocketID
	data := func(seq uint32) []byte {
		p := wire.Header{Seq: seq, DestSocket: upstreamSocket}.Append(nil)
		return append(p, make([]byte, 188)...)
	}
	c.Send(data(1))
	c.Send(wire.AppendShutdown(nil, upstreamSocket, 0))
	waitFor(t, 2*time.Second, "the session to end", func() bool { return session.Default.Len() == 0 })
	waitFor(t, 2*time.Second, "the plugin's goroutines to stop", func() bool { return testpeer.OurGoroutines() == 0 })

	// Whatever the session relayed before it ended (the backend answers a
	// SHUTDOWN with one of its own) is not what this test is about.
	for c.Recv(100*time.Millisecond) != nil {
	}
	seen, sockets := relay.Seen(), testpeer.OpenSockets(t)
	for i := range 50 {
		c.Send(data(uint32(2 + i)))
	}
	c.Send(wire.AppendShutdown(nil, upstreamSocket, 0))
	time.Sleep(300 * time.Millisecond)
	if n := session.Default.Len(); n != 0 {
		t.Errorf("%d sessions after the caller kept sending", n)
	}
	if got := relay.Seen(); got != seen {
		t.Errorf("%d datagrams of an ended session reached the backend", got-seen)
	}
	if got := testpeer.OpenSockets(t); got != sockets {
		t.Errorf("open sockets went from %d to %d", sockets, got)
	}
	// The only answer a caller still sending to an ended session gets is
	// another SHUTDOWN, in case it missed the first.
	for got := c.Recv(100 * time.Millisecond); got != nil; got = c.Recv(100 * time.Millisecond) {
		if !wire.IsShutdown(got) || wire.DestSocketOf(got) != 777 {
			t.Errorf("proxy answered an ended session's datagram with %x", got)
		}
	}
}
