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

// Upstreams may name {l4.srt.*} placeholders, resolved per caller.
func TestPlaceholderUpstream(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"upstream_allow": []string{"127.0.0.1/32"},
		"routes":         []any{map[string]any{"to": []string{"udp/{l4.srt.host}:{l4.srt.key.port}"}}},
	}, testpeer.Options{})
	for _, be := range []*srtbackend.Server{a, b} {
		// A stream of its own per backend: a second publisher of a live
		// stream would follow the first (the stream directory).
		id := fmt.Sprintf("#!::h=127.0.0.1,r=live/%s,port=%d,m=publish", be.Name, be.Port())
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
