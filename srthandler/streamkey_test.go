package srthandler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// landedOn reports which backend accepted each stream ID.
func landedOn(backends map[string]*srtbackend.Server) map[string]string {
	out := map[string]string{}
	for name, b := range backends {
		for _, c := range b.Conns() {
			out[c.StreamID] = name
		}
	}
	return out
}

// MediaMTX names a path's publisher publish:PATH and its readers
// read:PATH[:USER:PASS][:QUERY]: stream_hash must send them all to one
// origin. Readers dial first, so that only the hash can bring them
// together, whatever else (the directory) knows of live publishers.
func TestMediaMTXStreamIDsShareAnOrigin(t *testing.T) {
	backends := map[string]*srtbackend.Server{"a": startBackend(t, "a"), "b": startBackend(t, "b"), "c": startBackend(t, "c")}
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{
			"stream_id_regexp": "^(publish|read):",
			"to":               to(backends["a"].Addr(), backends["b"].Addr(), backends["c"].Addr()),
			"lb_policy":        "stream_hash",
		}},
	}, testpeer.Options{})

	const paths = 24
	forms := func(path string) []string {
		return []string{"read:" + path, "read:" + path + ":viewer:s3cret", "read:" + path + ":tok=1", "publish:" + path}
	}
	var ids []string
	for i := range paths {
		for _, id := range forms(fmt.Sprintf("field/cam%d", i)) {
			c, err := testpeer.Dial(p.Addr, id, testpeer.DialOptions{})
			if err != nil {
				t.Fatalf("dial %q: %v", id, err)
			}
			c.Close()
			ids = append(ids, id)
		}
	}
	waitFor(t, 5*time.Second, "every caller at a backend", func() bool { return len(landedOn(backends)) == len(ids) })
	where := landedOn(backends)
	used := map[string]bool{}
	for i := range paths {
		path := fmt.Sprintf("field/cam%d", i)
		want := where["publish:"+path]
		used[want] = true
		for _, id := range forms(path) {
			if where[id] != want {
				t.Errorf("%q reached %s, its publisher %s", id, where[id], want)
			}
		}
	}
	// Otherwise the test proves nothing about the hash.
	if len(used) < 2 {
		t.Errorf("%d paths all on one origin: %v", paths, used)
	}
}
