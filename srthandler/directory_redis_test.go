package srthandler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/directory"
	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/srthandler"
)

// otherInstance is a second proxy instance's directory, in this process
// under an ID of its own (Caddy runs one configuration per process): it
// writes to and reads from the shared Redis exactly as the proxy does.
func otherInstance(t *testing.T, addr string, ttl time.Duration) (*directory.Table, *directory.Mirror) {
	t.Helper()
	table := directory.NewTable("other-instance")
	store := directory.NewRedis(directory.RedisOptions{Addr: addr, Prefix: srthandler.DefaultDirectoryPrefix, TTL: ttl,
		Timeout: 200 * time.Millisecond, Instance: "other-instance"})
	m := directory.StartMirror(table, store, ttl, 200*time.Millisecond, zap.NewNop(), nil)
	t.Cleanup(func() { m.Stop(); store.Close() })
	return table, m
}

func liveStreams(t *testing.T, p adminGetter) []srthandler.LiveStreamView {
	t.Helper()
	return adminJSON[[]srthandler.LiveStreamView](t, p, "/srt/streams")
}

// Two instances share one Redis: a publisher placed through the other
// instance (on an origin this proxy's route does not even list) draws
// this proxy's players; this proxy's publishers are seen by the other.
// Redis killed: callers still connect, placed locally; Redis restarted
// empty: this proxy's live publisher is back in it within one refresh.
func TestDirectoryRedisSharedBetweenInstances(t *testing.T) {
	r := testpeer.StartRedis(t)
	const ttl = 900 * time.Millisecond
	backends := map[string]*srtbackend.Server{"a": startBackend(t, "a"), "b": startBackend(t, "b"), "c": startBackend(t, "c")}
	p := testpeer.StartProxy(t, map[string]any{
		"directory": map[string]any{"redis": map[string]any{"address": r.Addr, "ttl": ttl.String()}},
		"routes":    []any{routeTo("", backends["a"].Addr(), backends["c"].Addr())},
	}, testpeer.Options{Admin: true})
	otherTable, other := otherInstance(t, r.Addr, ttl)

	// A publisher through the other instance, which placed it on b.
	pubB, err := testpeer.Dial(backends["b"].Addr(), "#!::r=live/elsewhere,m=publish", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pubB.Close()
	entry, _ := otherTable.Publish(directory.Key{Resource: "live/elsewhere"}, false)
	entry.Established(backends["b"].Addr(), time.Now())
	waitFor(t, 2*time.Second, "the other instance's entry in redis", func() bool {
		es, err := other.List()
		return err == nil && len(es) == 1
	})
	if got, _ := dialWhere(t, p.Addr, "#!::r=live/elsewhere", backends, false); got != "b" {
		t.Errorf("player of a stream published through the other instance reached %q, want b", got)
	}

	// A publisher through this proxy is seen by the other instance.
	home, _ := dialWhere(t, p.Addr, "#!::r=live/here,m=publish", backends, true)
	key := directory.Key{Resource: "live/here"}
	seen := func() string {
		es, err := other.Find(key)
		if err != nil {
			return ""
		}
		e, _ := directory.Newest(es)
		return e.Upstream
	}
	waitFor(t, 2*time.Second, "this proxy's publisher seen by the other instance", func() bool { return seen() == backends[home].Addr() })
	var listed bool
	for _, s := range liveStreams(t, p) {
		if s.Resource == "live/here" && s.Publishers == 1 && s.Upstream == backends[home].Addr() && s.Instance == directory.Instance {
			listed = true
		}
	}
	if !listed {
		t.Errorf("GET /srt/streams does not list live/here: %+v", liveStreams(t, p))
	}

	r.Kill()
	for _, id := range []string{"#!::r=live/here", "#!::r=live/during,m=publish", "#!::r=live/during"} {
		start := time.Now()
		got, _ := dialWhere(t, p.Addr, id, backends, true)
		if got == "" {
			t.Errorf("%s: no connection while redis is down", id)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v while redis is down", id, d)
		}
		if id == "#!::r=live/here" && got != home {
			t.Errorf("player of live/here reached %s while redis is down, its publisher is on %s", got, home)
		}
	}
	r.Start()
	start := time.Now()
	waitFor(t, ttl/3+2*time.Second, "the publisher back in the restarted redis", func() bool { return seen() == backends[home].Addr() })
	t.Logf("entry back in the restarted redis after %v (refresh every %v)", time.Since(start), ttl/3)
}

// TestDirectoryConnectTimeReport measures what the Redis directory adds to
// a caller's connect time against the in-memory one: the median of 100
// libsrt connects of players of a live stream each, same run, same origin.
func TestDirectoryConnectTimeReport(t *testing.T) {
	const repeat = 100
	r := testpeer.StartRedis(t)
	b := startBackend(t, "b")
	memory := map[string]any{"routes": []any{routeTo("", b.Addr())}}
	withRedis := map[string]any{
		"directory": map[string]any{"redis": map[string]any{"address": r.Addr}},
		"routes":    []any{routeTo("", b.Addr())},
	}
	p := testpeer.StartProxy(t, memory, testpeer.Options{Admin: true})
	pub, err := testpeer.Dial(p.Addr, "#!::r=live/timing,m=publish", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	mem := medianConnect(t, "memory directory", p.Addr, "#!::r=live/timing", repeat)
	if err := p.Reload(withRedis); err != nil {
		t.Fatal(err)
	}
	red := medianConnect(t, "redis directory", p.Addr, "#!::r=live/timing", repeat)
	if err := p.Reload(memory); err != nil {
		t.Fatal(err)
	}
	mem2 := medianConnect(t, "memory directory, again", p.Addr, "#!::r=live/timing", repeat)
	t.Logf("redis directory adds %v to the median connect (memory: %v and %v)", red-(mem+mem2)/2, mem, mem2)
}

// Two Caddy instances, each a real Caddy with an admin API (this process
// and a child process), share one real Redis. Publishers come in through
// the child on origins a and b; players through this one meet them. Both
// are reloaded to a, b, c (publishers then come in through this one too),
// then to the fleet without the origin of the child's first stream
// (drained): every player, through either instance, meets its publisher.
// Redis killed: callers still connect through both. Redis restarted empty:
// the child's first publisher, live across the outage on the drained
// origin, is found again through this instance within one refresh. The
// child killed with SIGKILL: its entries, seen in Redis before, are gone
// within the TTL; this instance's stay.
func TestDirectoryRedisTwoCaddies(t *testing.T) {
	r := testpeer.StartRedis(t)
	const ttl = time.Second
	backends := map[string]*srtbackend.Server{"a": startBackend(t, "a"), "b": startBackend(t, "b"), "c": startBackend(t, "c"), "d": startBackend(t, "d")}
	handler := func(names ...string) map[string]any {
		var addrs []string
		for _, n := range names {
			addrs = append(addrs, backends[n].Addr())
		}
		return map[string]any{
			"directory": map[string]any{"redis": map[string]any{"address": r.Addr, "ttl": ttl.String()}},
			"routes":    []any{routeTo("", addrs...)},
		}
	}
	child := testpeer.StartCaddyProcess(t, handler("a", "b"))
	p := testpeer.StartProxy(t, handler("a", "b"), testpeer.Options{Admin: true})
	vias := []struct {
		name, tag, addr string
	}{{"this Caddy", "here", p.Addr}, {"the child Caddy", "child", child.Addr}}
	reload := func(names ...string) {
		t.Helper()
		if err := child.Reload(handler(names...)); err != nil {
			t.Fatalf("reloading the child Caddy: %v", err)
		}
		if err := p.Reload(handler(names...)); err != nil {
			t.Fatalf("reloading this Caddy: %v", err)
		}
	}

	// Redis as an observer reads it: what is there, not what an instance
	// remembers.
	observer := directory.NewRedis(directory.RedisOptions{Addr: r.Addr, Prefix: srthandler.DefaultDirectoryPrefix,
		TTL: ttl, Timeout: time.Second, Instance: "observer"})
	t.Cleanup(func() { observer.Close() })
	inRedis := func(mine bool) map[string]directory.Entry {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		es, err := observer.List(ctx)
		if err != nil {
			t.Fatalf("listing redis: %v", err)
		}
		out := map[string]directory.Entry{}
		for _, e := range es {
			if (e.Instance == directory.Instance) == mine && e.Publishers > 0 {
				out[e.Resource] = e
			}
		}
		return out
	}

	const streams = 12
	home := map[string]string{} // stream -> origin of its publisher
	var order []string
	publish := func(via, prefix string) {
		t.Helper()
		for i := range streams {
			res := fmt.Sprintf("live/%s%d", prefix, i)
			if home[res], _ = dialWhere(t, via, "#!::r="+res+",m=publish", backends, true); home[res] == "" {
				t.Fatalf("publisher of %s through %s reached no origin", res, via)
			}
			order = append(order, res)
		}
	}
	meet := func(phase string) {
		t.Helper()
		for _, res := range order {
			for _, v := range vias {
				if got, _ := dialWhere(t, v.addr, "#!::r="+res, backends, false); got != home[res] {
					t.Errorf("%s: player of %s through %s reached %q, its publisher is on %s", phase, res, v.name, got, home[res])
				}
			}
		}
	}
	listed := func(mine bool, prefix string) func() bool {
		return func() bool {
			n := 0
			for res := range inRedis(mine) {
				if strings.HasPrefix(res, "live/"+prefix) {
					n++
				}
			}
			return n == streams
		}
	}

	// Origins a, b: publishers through the child, players through both.
	publish(child.Addr, "child")
	waitFor(t, 2*time.Second, "the child's publishers in redis", listed(false, "child"))
	meet("origins a, b")

	// A fleet change on both: a, b, c. Publishers through this one now.
	reload("a", "b", "c")
	publish(p.Addr, "here")
	waitFor(t, 2*time.Second, "this Caddy's publishers in redis", listed(true, "here"))
	meet("origins a, b, c")

	// Drain the origin of the child's first publisher on both.
	drained := home["live/child0"]
	var kept []string
	for _, n := range []string{"a", "b", "c"} {
		if n != drained {
			kept = append(kept, n)
		}
	}
	reload(kept...)
	meet(fmt.Sprintf("origin %s drained", drained))

	// A rolling reload: this Caddy first, to a fleet of one new origin,
	// while the child still routes to the old ones. A player through
	// either finds a publisher placed through the other: to each, the
	// other's origin is one no route of its own lists (draining).
	if err := p.Reload(handler("d")); err != nil {
		t.Fatalf("reloading this Caddy: %v", err)
	}
	if got, _ := dialWhere(t, p.Addr, "#!::r=live/rolled,m=publish", backends, true); got != "d" {
		t.Fatalf("a publisher through the reloaded Caddy reached %q, want d", got)
	}
	waitFor(t, 2*time.Second, "live/rolled in redis", func() bool { return inRedis(true)["live/rolled"].Upstream == backends["d"].Addr() })
	if got, _ := dialWhere(t, child.Addr, "#!::r=live/rolled", backends, false); got != "d" {
		t.Errorf("a player through the Caddy not yet reloaded reached %q, its publisher (through the reloaded one) is on d", got)
	}
	if got, _ := dialWhere(t, p.Addr, "#!::r=live/child1", backends, false); got != home["live/child1"] {
		t.Errorf("a player through the reloaded Caddy reached %q, its publisher (through the other) is on %s", got, home["live/child1"])
	}

	r.Kill()
	for _, v := range vias {
		for _, id := range []string{"#!::r=live/outage-" + v.tag + ",m=publish", "#!::r=live/outage-" + v.tag, "#!::r=live/child0", "#!::r=live/here0"} {
			start := time.Now()
			if got, _ := dialWhere(t, v.addr, id, backends, strings.Contains(id, "m=publish")); got == "" {
				t.Errorf("%s through %s: no connection while redis is down", id, v.name)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s through %s took %v while redis is down", id, v.name, d)
			}
		}
	}

	// Back, empty. Each instance's Redis client, after failing to dial
	// through the outage, dials again once a second (go-redis's pool), so
	// "one refresh" here is up to that second plus TTL/3.
	r.Start()
	start := time.Now()
	const recovery = ttl/3 + time.Second + 500*time.Millisecond
	waitFor(t, recovery, "the child's live publisher back in the restarted redis", func() bool {
		return inRedis(false)["live/child0"].Upstream == backends[drained].Addr()
	})
	t.Logf("the child's publisher was back in the restarted redis after %v (refresh every %v)", time.Since(start), ttl/3)
	waitFor(t, recovery, "this Caddy reading the child's publisher from the restarted redis", func() bool {
		b, err := p.Get("/srt/streams")
		var es []srthandler.LiveStreamView
		if err != nil || json.Unmarshal(b, &es) != nil {
			return false
		}
		for _, e := range es {
			if e.Resource == "live/child0" && e.Instance != directory.Instance && e.Upstream == backends[drained].Addr() {
				return true
			}
		}
		return false
	})
	t.Logf("this Caddy found it there after %v", time.Since(start))
	if got, _ := dialWhere(t, p.Addr, "#!::r=live/child0", backends, false); got != drained {
		t.Errorf("after redis came back empty, a player of live/child0 through this Caddy reached %q, its publisher (through the child) is on %s", got, drained)
	}
	waitFor(t, recovery, "this Caddy's publishers back in the restarted redis", listed(true, "here"))
	if got, _ := dialWhere(t, child.Addr, "#!::r=live/here0", backends, false); got != home["live/here0"] {
		t.Errorf("after redis came back empty, a player of live/here0 through the child reached %q, its publisher (through this Caddy) is on %s", got, home["live/here0"])
	}

	waitFor(t, 2*time.Second, "the child's publishers in redis", listed(false, "child"))
	child.Kill()
	start = time.Now()
	waitFor(t, ttl+time.Second, "the killed Caddy's entries gone from redis", func() bool { return len(inRedis(false)) == 0 })
	t.Logf("a SIGKILLed instance's entries were gone from redis after %v (ttl %v)", time.Since(start), ttl)
	if !listed(true, "here")() {
		t.Errorf("this Caddy's entries left redis with the killed one's: %v", inRedis(true))
	}
}
