package srthandler

import (
	"fmt"
	"testing"
)

func states(addrs ...string) []*upstreamState {
	out := make([]*upstreamState, len(addrs))
	for i, a := range addrs {
		out[i] = &upstreamState{addr: a}
	}
	return out
}

func firstOf(p Policy, pool []*upstreamState, key string) string {
	cp := append([]*upstreamState(nil), pool...)
	p.Order(cp, key)
	return cp[0].addr
}

// Rendezvous hashing: losing one of N upstreams moves exactly the streams
// that were on it, and its return moves exactly those back.
func TestStreamHashMovesOnlyTheLostUpstreamsStreams(t *testing.T) {
	all := states("10.0.0.1:10080", "10.0.0.2:10080", "10.0.0.3:10080", "10.0.0.4:10080", "10.0.0.5:10080")
	for lost := range all {
		var rest []*upstreamState
		for i, u := range all {
			if i != lost {
				rest = append(rest, u)
			}
		}
		counts := map[string]int{}
		for i := range 1000 {
			key := fmt.Sprintf("\x00live/stream%d", i)
			before := firstOf(StreamHash{}, all, key)
			during := firstOf(StreamHash{}, rest, key)
			counts[before]++
			if before != all[lost].addr && during != before {
				t.Fatalf("%s moved from %s to %s when %s left", key, before, during, all[lost].addr)
			}
			if during == all[lost].addr {
				t.Fatalf("%s still on the removed upstream", key)
			}
			if after := firstOf(StreamHash{}, all, key); after != before {
				t.Fatalf("%s: %s before, %s after the upstream came back", key, before, after)
			}
		}
		for _, u := range all {
			// 1000 streams over 5 upstreams: 200 each, give or take.
			if c := counts[u.addr]; c < 130 || c > 270 {
				t.Errorf("%s got %d of 1000 streams", u.addr, c)
			}
		}
	}
}

// The order does not depend on the configured order of the upstreams, so
// proxies that list them differently still agree.
func TestStreamHashIgnoresListOrder(t *testing.T) {
	a := states("a:1", "b:1", "c:1")
	b := states("c:1", "a:1", "b:1")
	for i := range 200 {
		key := fmt.Sprintf("h\x00r%d", i)
		if x, y := firstOf(StreamHash{}, a, key), firstOf(StreamHash{}, b, key); x != y {
			t.Fatalf("%s: %s vs %s", key, x, y)
		}
	}
}

func TestPolicies(t *testing.T) {
	pool := states("a:1", "b:1", "c:1")
	rr := &RoundRobin{}
	var got []string
	for range 6 {
		got = append(got, firstOf(rr, pool, ""))
	}
	if fmt.Sprint(got) != "[a:1 b:1 c:1 a:1 b:1 c:1]" {
		t.Errorf("round_robin: %v", got)
	}
	if f := firstOf(First{}, pool, "x"); f != "a:1" {
		t.Errorf("first: %s", f)
	}
	pool[0].sessions.Store(3)
	pool[1].sessions.Store(1)
	pool[2].sessions.Store(2)
	cp := append([]*upstreamState(nil), pool...)
	(&LeastSessions{}).Order(cp, "")
	if cp[0].addr != "b:1" || cp[1].addr != "c:1" || cp[2].addr != "a:1" {
		t.Errorf("least_sessions order: %s %s %s", cp[0].addr, cp[1].addr, cp[2].addr)
	}
	seen := map[string]bool{}
	for range 200 {
		seen[firstOf(Random{}, pool, "")] = true
	}
	if len(seen) != 3 {
		t.Errorf("random reached %d of 3 upstreams", len(seen))
	}
	// Every policy keeps every upstream, for failover.
	for _, p := range []Policy{StreamHash{}, rr, Random{}, First{}, &LeastSessions{}} {
		cp := append([]*upstreamState(nil), pool...)
		p.Order(cp, "k")
		m := map[string]bool{}
		for _, u := range cp {
			m[u.addr] = true
		}
		if len(m) != 3 {
			t.Errorf("%T dropped upstreams: %v", p, m)
		}
	}
}
