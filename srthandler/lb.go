package srthandler

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
)

// Policy orders a route's upstreams for one caller: the handler tries the
// first, and falls to the next when one does not answer.
type Policy interface {
	Order(pool []*upstreamState, key string)
}

func newPolicy(name string) (Policy, error) {
	switch name {
	case "", "stream_hash":
		return StreamHash{}, nil
	case "round_robin":
		return &RoundRobin{}, nil
	case "random":
		return Random{}, nil
	case "first":
		return First{}, nil
	case "least_sessions":
		return LeastSessions{}, nil
	}
	return nil, fmt.Errorf("lb_policy %q: want stream_hash, round_robin, random, first or least_sessions", name)
}

// StreamHash orders upstreams by rendezvous hashing of the stream key
// (host and resource): the publisher and every player of a stream reach
// the same upstream, every proxy with the same upstream list agrees
// without talking to the others, and losing one upstream moves only the
// streams that were on it.
type StreamHash struct{}

// Order implements Policy.
func (StreamHash) Order(pool []*upstreamState, key string) {
	slices.SortStableFunc(pool, func(a, b *upstreamState) int {
		sa, sb := rendezvousScore(key, a.addr), rendezvousScore(key, b.addr)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
}

// rendezvousScore is a stable 64-bit hash of key and addr: FNV-1a, then a
// splitmix64 finaliser so that similar addresses spread evenly. It must
// never change: proxies of different versions have to agree.
func rendezvousScore(key, addr string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	h = (h ^ 0) * prime
	for i := 0; i < len(addr); i++ {
		h = (h ^ uint64(addr[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// RoundRobin starts each caller at the next upstream in turn.
type RoundRobin struct{ next atomic.Uint64 }

// Order implements Policy.
func (r *RoundRobin) Order(pool []*upstreamState, _ string) {
	if len(pool) == 0 {
		return
	}
	n := int((r.next.Add(1) - 1) % uint64(len(pool)))
	rotate(pool, n)
}

// Random starts each caller at a random upstream.
type Random struct{}

// Order implements Policy.
func (Random) Order(pool []*upstreamState, _ string) {
	if len(pool) == 0 {
		return
	}
	rotate(pool, rand.IntN(len(pool)))
}

// First keeps the configured order: the first upstream takes everything
// while it answers, the next ones are failovers.
type First struct{}

// Order implements Policy.
func (First) Order([]*upstreamState, string) {}

// LeastSessions prefers the upstream with the fewest live sessions,
// counting handshakes in progress, so concurrent callers spread out.
type LeastSessions struct{}

// Order implements Policy. The counts are read once, so that sessions
// starting or ending during the sort cannot confuse it.
func (LeastSessions) Order(pool []*upstreamState, _ string) {
	counts := make(map[*upstreamState]int64, len(pool))
	for _, u := range pool {
		counts[u] = u.sessions.Load()
	}
	slices.SortStableFunc(pool, func(a, b *upstreamState) int {
		return cmp.Compare(counts[a], counts[b])
	})
}

func rotate(pool []*upstreamState, n int) {
	slices.Reverse(pool[:n])
	slices.Reverse(pool[n:])
	slices.Reverse(pool)
}
