package srthandler_test

import (
	"fmt"
	"testing"
	"time"

	srt "github.com/datarhei/gosrt"

	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// dialWhere connects a gosrt caller with id and reports which backend
// accepted it ("" when none did); the connection stays open until the
// test ends unless keep is false.
func dialWhere(t *testing.T, proxy, id string, backends map[string]*srtbackend.Server, keep bool) (string, srt.Conn) {
	t.Helper()
	before := map[string]int{}
	for name, b := range backends {
		before[name] = len(b.Conns())
	}
	c, err := testpeer.Dial(proxy, id, testpeer.DialOptions{})
	if err != nil {
		t.Fatalf("dial %q: %v", id, err)
	}
	if keep {
		t.Cleanup(func() { c.Close() })
	} else {
		defer c.Close()
	}
	// The backend records a caller just before it answers.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for name, b := range backends {
			if len(b.Conns()) > before[name] {
				return name, c
			}
		}
	}
	return "", c
}

func routeTo(policy string, addrs ...string) map[string]any {
	r := map[string]any{"to": to(addrs...)}
	if policy != "" {
		r["lb_policy"] = policy
	}
	return r
}

// Publishers live on two origins; a reload adds a third, another removes
// one of the first two while its publishers live (drain): every player
// reaches its publisher's origin, whatever stream_hash now says.
func TestDirectoryFollowsPublishersThroughFleetChanges(t *testing.T) {
	backends := map[string]*srtbackend.Server{"a": startBackend(t, "a"), "b": startBackend(t, "b"), "c": startBackend(t, "c")}
	addr := func(n string) string { return backends[n].Addr() }
	handler := func(names ...string) map[string]any {
		var addrs []string
		for _, n := range names {
			addrs = append(addrs, addr(n))
		}
		return map[string]any{"routes": []any{routeTo("", addrs...)}}
	}
	p := testpeer.StartProxy(t, handler("a", "b"), testpeer.Options{Admin: true})

	const streams = 12
	home := map[int]string{}
	for i := range streams {
		home[i], _ = dialWhere(t, p.Addr, fmt.Sprintf("#!::r=live/s%d,m=publish", i), backends, true)
	}
	players := func(phase string) (moved int) {
		for i := range streams {
			got, _ := dialWhere(t, p.Addr, fmt.Sprintf("#!::r=live/s%d", i), backends, false)
			if got != home[i] {
				t.Errorf("%s: player of live/s%d reached %q, its publisher is on %q", phase, i, got, home[i])
			}
		}
		return
	}
	players("before")
	if err := p.Reload(handler("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	players("origin c added")
	// Drain whichever of a and b holds publishers (both, as a rule).
	drained := home[0]
	keep := map[string]string{"a": "b", "b": "a"}[drained]
	if err := p.Reload(handler(keep, "c")); err != nil {
		t.Fatal(err)
	}
	players(drained + " removed (draining)")
	// A new stream does not go to the drained origin.
	for i := range streams {
		if got, _ := dialWhere(t, p.Addr, fmt.Sprintf("#!::r=live/new%d,m=publish", i), backends, false); got == drained {
			t.Errorf("new publisher live/new%d placed on the drained origin %s", i, drained)
		}
	}
}

// With publisher_conflict reject a second publisher of a live stream is
// refused with conflict (1409) at once; once the first is gone, a new one
// is welcome. With follow (default), the second goes where the first is,
// whatever the policy, and so do players.
func TestDirectoryPublisherConflict(t *testing.T) {
	backends := map[string]*srtbackend.Server{"a": startBackend(t, "a"), "b": startBackend(t, "b")}
	route := routeTo("round_robin", backends["a"].Addr(), backends["b"].Addr())
	p := testpeer.StartProxy(t, map[string]any{"publisher_conflict": "reject", "routes": []any{route}}, testpeer.Options{Admin: true})

	first, c := dialWhere(t, p.Addr, "#!::r=live/x,m=publish", backends, true)
	start := time.Now()
	_, err := testpeer.Dial(p.Addr, "publish:live/x", testpeer.DialOptions{})
	took := time.Since(start)
	if code, ok := testpeer.RejectReason(err); !ok || code != 1409 {
		t.Fatalf("second publisher: %v, want rejection 1409", err)
	}
	if took >= time.Second {
		t.Errorf("second publisher refused after %v", took)
	}
	for range 4 {
		if got, _ := dialWhere(t, p.Addr, "read:live/x", backends, false); got != first {
			t.Errorf("round_robin player reached %s, the publisher is on %s", got, first)
		}
	}
	c.Close()
	waitFor(t, 3*time.Second, "a new publisher after the first left", func() bool {
		c, err := testpeer.Dial(p.Addr, "#!::r=live/x,m=publish", testpeer.DialOptions{})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})

	if err := p.Reload(map[string]any{"routes": []any{route}}); err != nil {
		t.Fatal(err)
	}
	first, _ = dialWhere(t, p.Addr, "#!::r=live/y,m=publish", backends, true)
	for range 4 {
		if got, _ := dialWhere(t, p.Addr, "#!::r=live/y,m=publish", backends, true); got != first {
			t.Errorf("follow: second publisher reached %s, the first is on %s", got, first)
		}
	}
}

// An origin dies; its publishers reconnect and land on the other; the
// origin comes back (active health checks on): players follow the
// publishers where they are now, not the hash that points back.
func TestDirectoryOriginFailsAndReturns(t *testing.T) {
	backends := map[string]*srtbackend.Server{"a": startBackend(t, "a"), "b": startBackend(t, "b")}
	p := testpeer.StartProxy(t, map[string]any{
		"health_interval": "200ms",
		"health_timeout":  "150ms",
		"health_fails":    1,
		"health_passes":   1,
		"fail_duration":   -1,
		"routes":          []any{routeTo("", backends["a"].Addr(), backends["b"].Addr())},
	}, testpeer.Options{})

	const streams = 10
	home := map[int]string{}
	for i := range streams {
		home[i], _ = dialWhere(t, p.Addr, fmt.Sprintf("#!::r=live/m%d,m=publish", i), backends, true)
	}
	dead := home[0]
	addr := backends[dead].Addr()
	backends[dead].Close()
	time.Sleep(600 * time.Millisecond) // a check interval or two
	moved := 0
	for i := range streams {
		if home[i] == dead {
			// The publisher reconnects, as encoders do.
			home[i], _ = dialWhere(t, p.Addr, fmt.Sprintf("#!::r=live/m%d,m=publish", i), backends, true)
			if home[i] == dead || home[i] == "" {
				t.Fatalf("publisher of live/m%d reconnected to %q", i, home[i])
			}
			moved++
		}
	}
	revived := &srtbackend.Server{Name: dead}
	if err := revived.Listen(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(revived.Close)
	backends[dead] = revived
	time.Sleep(600 * time.Millisecond)
	// Back in the pool: a new stream that hashes to it gets there.
	back := false
	for i := range 20 {
		if got, _ := dialWhere(t, p.Addr, fmt.Sprintf("#!::r=live/fresh%d,m=publish", i), backends, false); got == dead {
			back = true
			break
		}
	}
	if !back {
		t.Fatalf("%s never came back into the pool", dead)
	}
	for i := range streams {
		if got, _ := dialWhere(t, p.Addr, fmt.Sprintf("#!::r=live/m%d", i), backends, false); got != home[i] {
			t.Errorf("player of live/m%d reached %q, its publisher is on %s", i, got, home[i])
		}
	}
	t.Logf("%d of %d publishers moved off %s; their players followed them", moved, streams, dead)
}

// Tiers chosen on purpose stay apart: with publishers routed to an ingest
// server and players to an edge (examples/ingest-and-edge), a player of a
// live stream goes to the edge, not to its publisher's ingest server. Once
// the ingest server leaves the config (drained), players follow it again.
func TestDirectoryKeepsTiersApart(t *testing.T) {
	backends := map[string]*srtbackend.Server{"ingest": startBackend(t, "ingest"), "edge": startBackend(t, "edge")}
	tiers := func(ingest bool) map[string]any {
		routes := []any{}
		if ingest {
			routes = append(routes, map[string]any{"mode": []string{"publish"}, "to": to(backends["ingest"].Addr())})
		}
		routes = append(routes, map[string]any{"mode": []string{"request"}, "to": to(backends["edge"].Addr())},
			map[string]any{"to": to(backends["edge"].Addr())})
		return map[string]any{"routes": routes}
	}
	p := testpeer.StartProxy(t, tiers(true), testpeer.Options{Admin: true})
	if got, _ := dialWhere(t, p.Addr, "#!::r=live/tier,m=publish", backends, true); got != "ingest" {
		t.Fatalf("publisher reached %q, want ingest", got)
	}
	if got, _ := dialWhere(t, p.Addr, "#!::r=live/tier", backends, false); got != "edge" {
		t.Errorf("player reached %q; its route sends players to the edge tier", got)
	}
	// The ingest server removed from the config while its publisher lives:
	// no route serves it, so it drains, and players follow the publisher.
	if err := p.Reload(tiers(false)); err != nil {
		t.Fatal(err)
	}
	if got, _ := dialWhere(t, p.Addr, "#!::r=live/tier", backends, false); got != "ingest" {
		t.Errorf("after the ingest server left the config, player reached %q, want its publisher's (draining) ingest", got)
	}
}
