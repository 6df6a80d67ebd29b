package srthandler_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

func startBackend(t *testing.T, name string) *srtbackend.Server {
	t.Helper()
	b := &srtbackend.Server{Name: name}
	if err := b.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func to(addrs ...string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = "udp/" + a
	}
	return out
}

func streamIDs(b *srtbackend.Server) []string {
	var ids []string
	for _, c := range b.Conns() {
		ids = append(ids, c.StreamID)
	}
	slices.Sort(ids)
	return ids
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRoutesByStreamID(t *testing.T) {
	live := startBackend(t, "live")
	vod := startBackend(t, "vod")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			map[string]any{"resource": []string{"live/*"}, "to": to(live.Addr())},
			map[string]any{"resource": []string{"vod/*"}, "to": to(vod.Addr())},
		},
	}, testpeer.Options{})

	cases := []struct {
		id      string
		backend *srtbackend.Server
	}{
		{"#!::r=live/cam1,m=publish", live},
		{"#!::h=live/cam2,m=publish", live}, // SRS legacy form
		{"vod/movie", vod},                  // plain ID: the resource itself
		{"#!::u=alice,r=vod/clip,m=publish,x=custom value", vod},
		// 13 bytes: not a whole number of words, so the padding is exercised.
		{"live/ünïcode", live},
	}
	for _, c := range cases {
		conn, err := testpeer.Dial(p.Addr, c.id, testpeer.DialOptions{})
		if err != nil {
			t.Fatalf("dial %q: %v", c.id, err)
		}
		payload := bytes.Repeat([]byte{0x47}, 1316)
		if _, err := conn.Write(payload); err != nil {
			t.Fatalf("write %q: %v", c.id, err)
		}
		defer conn.Close()
	}
	waitFor(t, 5*time.Second, "every backend connection", func() bool {
		return len(live.Conns())+len(vod.Conns()) == len(cases)
	})
	var wantLive, wantVod []string
	for _, c := range cases {
		if c.backend == live {
			wantLive = append(wantLive, c.id)
		} else {
			wantVod = append(wantVod, c.id)
		}
	}
	slices.Sort(wantLive)
	slices.Sort(wantVod)
	if got := streamIDs(live); !slices.Equal(got, wantLive) {
		t.Errorf("live backend got stream IDs %q, want %q", got, wantLive)
	}
	if got := streamIDs(vod); !slices.Equal(got, wantVod) {
		t.Errorf("vod backend got stream IDs %q, want %q", got, wantVod)
	}
	waitFor(t, 5*time.Second, "published bytes at the backends", func() bool {
		return live.Published("live/cam1") == 1316 && live.Published("live/cam2") == 1316 &&
			vod.Published("vod/clip") == 1316
	})
}

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

func TestDeadUpstreamIsRejectedInTime(t *testing.T) {
	// One upstream port with nothing behind it (ICMP says so at once) and
	// one that swallows everything (only the timeout can tell).
	refused := fmt.Sprintf("127.0.0.1:%d", testpeer.FreeUDPPort(t))
	black := testpeer.NewRelay(t, refused)
	black.Pause()
	p := testpeer.StartProxy(t, map[string]any{
		"handshake_timeout": "1s",
		"routes": []any{
			map[string]any{"resource": []string{"refused"}, "to": to(refused)},
			map[string]any{"resource": []string{"silent"}, "to": to(black.Addr)},
		},
	}, testpeer.Options{})
	for _, c := range []struct {
		id  string
		max time.Duration
	}{
		{"refused", 500 * time.Millisecond},
		{"silent", 1500 * time.Millisecond},
	} {
		start := time.Now()
		_, err := testpeer.Dial(p.Addr, c.id, testpeer.DialOptions{})
		took := time.Since(start)
		got, ok := testpeer.RejectReason(err)
		if !ok || got != 1503 {
			t.Errorf("%s upstream: got %v, want rejection 1503 (down)", c.id, err)
		}
		if took > c.max {
			t.Errorf("%s upstream: rejection took %v, want under %v", c.id, took, c.max)
		}
	}
}

func TestPublishThenPlay(t *testing.T) {
	for _, path := range dataPaths {
		t.Run(path, func(t *testing.T) { testPublishThenPlay(t, path) })
	}
}

func testPublishThenPlay(t *testing.T, dataPath string) {
	b1 := startBackend(t, "b1")
	b2 := startBackend(t, "b2")
	p := testpeer.StartProxy(t, map[string]any{
		"data_path": dataPath,
		"routes":    []any{map[string]any{"to": to(b1.Addr(), b2.Addr())}},
	}, testpeer.Options{})

	pub, err := testpeer.Dial(p.Addr, "#!::r=live/show,m=publish", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	play, err := testpeer.Dial(p.Addr, "#!::r=live/show,m=request", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer play.Close()

	// stream_hash must have put both on the same backend (which records a
	// connection just after answering it).
	waitFor(t, 2*time.Second, "both connections at the backends", func() bool {
		return len(b1.Conns())+len(b2.Conns()) == 2
	})
	if n1, n2 := len(b1.Conns()), len(b2.Conns()); !(n1 == 2 && n2 == 0 || n1 == 0 && n2 == 2) {
		t.Fatalf("publisher and player split across backends: %d and %d connections", n1, n2)
	}

	got := make(chan []byte, 100)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := play.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	var sent [][]byte
	for i := range 20 {
		msg := bytes.Repeat([]byte{byte(i)}, 188*7)
		sent = append(sent, msg)
		if _, err := pub.Write(msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var recv [][]byte
	timeout := time.After(5 * time.Second)
	for len(recv) < len(sent) {
		select {
		case m, ok := <-got:
			if !ok {
				t.Fatalf("player closed after %d messages", len(recv))
			}
			recv = append(recv, m)
		case <-timeout:
			t.Fatalf("player got %d of %d messages", len(recv), len(sent))
		}
	}
	for i := range sent {
		if !bytes.Equal(sent[i], recv[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
}

// Upstreams may name {l4.srt.*} placeholders, resolved per caller.
func TestPlaceholderUpstream(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"upstream_allow": []string{"127.0.0.1/32"},
		"routes":         []any{map[string]any{"to": []string{"udp/{l4.srt.host}:{l4.srt.key.port}"}}},
	}, testpeer.Options{})
	for _, be := range []*srtbackend.Server{a, b} {
		id := fmt.Sprintf("#!::h=127.0.0.1,r=live/x,port=%d,m=publish", be.Port())
		c, err := testpeer.Dial(p.Addr, id, testpeer.DialOptions{})
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		c.Close()
		if got := streamIDs(be); len(got) != 1 || got[0] != id {
			t.Errorf("backend %s got %q, want %q", be.Name, got, id)
		}
	}
	// A placeholder that resolves to no address is the caller's problem,
	// reported as an internal error rather than a silent timeout.
	_, err := testpeer.Dial(p.Addr, "#!::r=live/x", testpeer.DialOptions{})
	if code, ok := testpeer.RejectReason(err); !ok || code != 1500 {
		t.Errorf("unresolvable upstream: got %v, want rejection 1500", err)
	}

	// Outside upstream_allow: forbidden at once, and the origin there
	// (listening, so an unfenced proxy would reach it) sees nothing.
	outside := &srtbackend.Server{Name: "outside"}
	if err := outside.Listen("127.0.0.2:0"); err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	t.Cleanup(outside.Close)
	id := fmt.Sprintf("#!::h=127.0.0.2,r=live/x,port=%d,m=publish", outside.Port())
	_, err = testpeer.Dial(p.Addr, id, testpeer.DialOptions{})
	if code, ok := testpeer.RejectReason(err); !ok || code != 1403 {
		t.Errorf("upstream outside upstream_allow: got %v, want rejection 1403", err)
	}
	if n := len(outside.Conns()); n != 0 {
		t.Errorf("the origin outside upstream_allow got %d callers", n)
	}
}
