package srthandler

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/srtroute/caddy-l4-srt/internal/streamid"
)

// Policy orders a route's upstreams for one caller: the handler tries the
// first, and falls to the next when one does not answer.
type Policy interface {
	Order(pool []*upstreamState, key string)
}

// policies is every lb_policy by name, in the order the docs and error
// messages list them; the first is the default.
var policies = []struct {
	name string
	new  func() Policy
}{
	{"stream_hash", func() Policy { return StreamHash{} }},
	{"round_robin", func() Policy { return &RoundRobin{} }},
	{"random", func() Policy { return Random{} }},
	{"first", func() Policy { return First{} }},
	{"least_sessions", func() Policy { return &LeastSessions{} }},
}

// newPolicy returns a fresh policy for a route; "" is the default.
func newPolicy(name string) (Policy, error) {
	if name == "" {
		name = policies[0].name
	}
	names := make([]string, len(policies))
	for i, p := range policies {
		if p.name == name {
			return p.new(), nil
		}
		names[i] = p.name
	}
	return nil, fmt.Errorf("lb_policy %q: want one of %s", name, strings.Join(names, ", "))
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
type LeastSessions struct {
	// mu makes ordering by session count and taking a count on the first
	// one step, so that concurrent callers do not all pick the same one.
	mu sync.Mutex
}

// Order implements Policy. The counts are read once, so that sessions
// starting or ending during the sort cannot confuse it.
func (l *LeastSessions) Order(pool []*upstreamState, _ string) {
	counts := make(map[*upstreamState]int64, len(pool))
	for _, u := range pool {
		counts[u] = u.sessions.Load()
	}
	slices.SortStableFunc(pool, func(a, b *upstreamState) int {
		return cmp.Compare(counts[a], counts[b])
	})
}

// take orders pool and takes a session count on its first upstream.
func (l *LeastSessions) take(pool []*upstreamState, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Order(pool, key)
	pool[0].acquire()
}

func rotate(pool []*upstreamState, n int) {
	slices.Reverse(pool[:n])
	slices.Reverse(pool[n:])
	slices.Reverse(pool)
}

var errNoHealthy = errors.New("no healthy upstream")

// pick orders the route's healthy upstreams for this caller and takes a
// session count on the first.
func pick(r *Route, info *streamid.Info, repl *caddy.Replacer, now time.Time) ([]*upstreamState, error) {
	pool := make([]*upstreamState, 0, len(r.upstreams))
	for _, u := range r.upstreams {
		var s *upstreamState
		if u.addr != "" {
			s = stateOf(u.addr)
		} else {
			addr, err := u.resolve(repl)
			if err == nil {
				addr, err = r.allowed(addr)
			}
			if err != nil {
				return nil, err
			}
			s = dynamicStateOf(addr)
		}
		if s.healthy(now) {
			pool = append(pool, s)
		}
	}
	if r.pool != nil {
		members := r.pool.current()
		if members == nil && len(r.upstreams) == 0 {
			return nil, errNoAnswerYet
		}
		for _, addr := range members {
			if s := stateOf(addr); s.healthy(now) {
				pool = append(pool, s)
			}
		}
	}
	if len(pool) == 0 {
		return nil, errNoHealthy
	}
	take(r.policy, pool, info.Key())
	return pool, nil
}

// taker is a policy whose ordering and the count it takes on the first
// upstream must be one step.
type taker interface {
	take(pool []*upstreamState, key string)
}

// take orders pool by p and takes a session count on the first upstream.
func take(p Policy, pool []*upstreamState, key string) {
	if t, ok := p.(taker); ok {
		t.take(pool, key)
		return
	}
	p.Order(pool, key)
	pool[0].acquire()
}
