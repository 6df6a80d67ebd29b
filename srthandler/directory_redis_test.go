package srthandler_test

import (
	"fmt"
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

func liveStreams(t *testing.T, p *testpeer.Proxy) []srthandler.LiveStreamView {
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

// Two Caddy processes share one Redis. Publishers come in through a second
// Caddy (a process of its own, listing origins a and b); players through
// this one, whose fleet has grown to a, b and c: every player meets its
// publisher. The second Caddy is then killed with SIGKILL: its entries,
// listed before, are gone within the TTL.
func TestDirectoryRedisTwoCaddies(t *testing.T) {
	r := testpeer.StartRedis(t)
	const ttl = time.Second
	backends := map[string]*srtbackend.Server{"a": startBackend(t, "a"), "b": startBackend(t, "b"), "c": startBackend(t, "c")}
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
	second := testpeer.StartCaddyProcess(t, handler("a", "b"))
	p := testpeer.StartProxy(t, handler("a", "b", "c"), testpeer.Options{Admin: true})

	const streams = 12
	home := map[int]string{}
	for i := range streams {
		home[i], _ = dialWhere(t, second.Addr, fmt.Sprintf("#!::r=live/two%d,m=publish", i), backends, true)
	}
	others := func() int {
		n := 0
		for _, s := range liveStreams(t, p) {
			if s.Instance != directory.Instance && s.Publishers > 0 {
				n++
			}
		}
		return n
	}
	waitFor(t, 2*time.Second, "the second Caddy's streams listed", func() bool { return others() == streams })
	for i := range streams {
		if got, _ := dialWhere(t, p.Addr, fmt.Sprintf("#!::r=live/two%d", i), backends, false); got != home[i] {
			t.Errorf("player of live/two%d through this Caddy reached %q, its publisher (through the other) is on %s", i, got, home[i])
		}
	}

	second.Kill()
	start := time.Now()
	waitFor(t, ttl+time.Second, "the killed Caddy's entries gone", func() bool { return others() == 0 })
	t.Logf("a SIGKILLed instance's entries were gone after %v (ttl %v)", time.Since(start), ttl)
}
