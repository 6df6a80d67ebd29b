package srthandler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// whereFrom reports the backend that accepted a caller with this stream
// ID and mode, and how many did.
func whereFrom(backends map[string]*srtbackend.Server, id string) (string, int) {
	where, n := "", 0
	for name, b := range backends {
		for _, c := range b.Conns() {
			if c.StreamID == id {
				where, n = name, n+1
			}
		}
	}
	return where, n
}

// Real libsrt publishers live on two origins, fed all along; a reload adds
// a third origin, another removes one of the first two (drain): every new
// libsrt player reaches its publisher's origin and receives its stream,
// and every publisher keeps flowing.
func TestInteropDirectoryFleetChanges(t *testing.T) {
	testpeer.RequireTool(t, "srt-live-transmit")
	backends := map[string]*srtbackend.Server{"a": startBackend(t, "a"), "b": startBackend(t, "b"), "c": startBackend(t, "c")}
	handler := func(names ...string) map[string]any {
		var addrs []string
		for _, n := range names {
			addrs = append(addrs, backends[n].Addr())
		}
		return map[string]any{"routes": []any{routeTo("", addrs...)}}
	}
	p := testpeer.StartProxy(t, handler("a", "b"), testpeer.Options{Admin: true})

	const streams = 6
	slt := testpeer.SLTOptions{Latency: 500 * time.Millisecond}
	home := map[int]string{}
	pubs := make([]*testpeer.SLTCaller, streams)
	for i := range streams {
		id := fmt.Sprintf("#!::r=live/f%d,m=publish", i)
		pubs[i] = testpeer.StartSLTCaller(t, p.Addr, id, slt)
		if !pubs[i].Connected() {
			t.Fatalf("publisher %d did not connect:\n%s", i, pubs[i].Stderr())
		}
		waitFor(t, 2*time.Second, "the publisher at an origin", func() bool { w, _ := whereFrom(backends, id); return w != "" })
		home[i], _ = whereFrom(backends, id)
	}
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		chunk := make([]byte, 1316)
		for tick := time.NewTicker(10 * time.Millisecond); ; {
			select {
			case <-stop:
				tick.Stop()
				return
			case <-tick.C:
			}
			for _, pub := range pubs {
				_ = pub.Feed(chunk, 1316, 0)
			}
		}
	}()
	defer func() { close(stop); <-fed }()

	players := func(phase string) {
		t.Helper()
		sinks := make([]*testpeer.Sink, streams)
		for i := range streams {
			var addr string
			sinks[i] = testpeer.StartSink(t)
			addr = sinks[i].Addr
			testpeer.StartSLTPlayer(t, p.Addr, fmt.Sprintf("#!::r=live/f%d", i), addr, slt)
		}
		for i := range streams {
			id := fmt.Sprintf("#!::r=live/f%d", i)
			waitFor(t, 5*time.Second, phase+": player of live/f"+fmt.Sprint(i)+" receiving", func() bool { return sinks[i].Bytes() > 0 })
			// Every player of this stream so far is on its publisher's origin.
			for name, b := range backends {
				for _, c := range b.Conns() {
					if c.StreamID == id && name != home[i] {
						t.Errorf("%s: a player of live/f%d reached %s, its publisher is on %s", phase, i, name, home[i])
					}
				}
			}
		}
	}
	players("before")
	if err := p.Reload(handler("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	players("c added")
	drained := home[0]
	keep := map[string]string{"a": "b", "b": "a"}[drained]
	if err := p.Reload(handler(keep, "c")); err != nil {
		t.Fatal(err)
	}
	players(drained + " removed (draining)")

	// Every publisher still flows.
	before := make([]uint64, streams)
	for i := range streams {
		before[i] = backends[home[i]].Published(fmt.Sprintf("live/f%d", i))
	}
	for i := range streams {
		waitFor(t, 3*time.Second, fmt.Sprintf("publisher %d flowing", i), func() bool {
			return backends[home[i]].Published(fmt.Sprintf("live/f%d", i)) > before[i]
		})
	}
	counts := map[string]int{}
	for _, h := range home {
		counts[h]++
	}
	t.Logf("publishers per origin: %v; drained %s", counts, drained)
}
