// Package fleet holds the origins that announced themselves to this
// process (SRS heartbeats), for the routes that serve them (`dynamic srs`).
// It is process-wide, like the session registry: a config reload neither
// forgets an origin nor waits for its next heartbeat.
package fleet

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Origin is one origin as its last heartbeat described it.
type Origin struct {
	// ID names the origin across heartbeats: SRS's server ID, stable across
	// restarts (its device_id when there is none).
	ID       string
	DeviceID string
	// SRT is the origin's SRT endpoint: the heartbeat's IP with the port of
	// each of its srt entries.
	SRT []netip.AddrPort
	// Service and PID change each time the origin restarts.
	Service, PID string
	Seen         time.Time
	// Expires is when the origin leaves the pool without a new heartbeat.
	Expires time.Time
}

// ErrFull refuses an origin the registry has no room for.
var ErrFull = errors.New("too many origins registered")

// DefaultMaxOrigins bounds the origins one process keeps: every one is a
// heartbeat source the operator allowed, but a misconfigured fleet must
// not grow the table without end.
const DefaultMaxOrigins = 1024

// Registry is the set of origins that announced themselves.
type Registry struct {
	mu      sync.Mutex
	origins map[string]*Origin
	max     int
	changed chan struct{} // closed and replaced on every change of membership
	// allow holds the allowlists of the routes that serve these origins:
	// an origin is admitted when one of them admits it.
	allow map[*allowlist]struct{}
}

type allowlist struct{ prefixes []netip.Prefix }

// NewRegistry returns an empty registry holding at most max origins.
func NewRegistry(max int) *Registry {
	if max <= 0 {
		max = DefaultMaxOrigins
	}
	return &Registry{origins: map[string]*Origin{}, max: max, changed: make(chan struct{}), allow: map[*allowlist]struct{}{}}
}

// SRS is the process's registry of SRS origins.
var SRS = NewRegistry(DefaultMaxOrigins)

// Serve records that a route serves the registry's origins, only those
// within prefixes when there are any; the returned function undoes it.
func (r *Registry) Serve(prefixes []netip.Prefix) (release func()) {
	a := &allowlist{prefixes: prefixes}
	r.mu.Lock()
	r.allow[a] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			delete(r.allow, a)
			r.mu.Unlock()
		})
	}
}

// Admits reports whether an origin at ip may register: when no route that
// serves the registry has an allowlist, or ip is within one of them.
func (r *Registry) Admits(ip netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.allow) == 0 {
		return true
	}
	for a := range r.allow {
		if Within(a.prefixes, ip) {
			return true
		}
	}
	return false
}

// Within reports whether ip is in one of prefixes, or prefixes is empty.
func Within(prefixes []netip.Prefix, ip netip.Addr) bool {
	if len(prefixes) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Register records a heartbeat. A known origin is refreshed; a new one is
// refused with ErrFull when the registry holds its maximum of live ones.
func (r *Registry) Register(o Origin) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, known := r.origins[o.ID]
	if !known {
		r.dropExpired(o.Seen)
		if len(r.origins) >= r.max {
			return ErrFull
		}
	}
	r.origins[o.ID] = &o
	if !known || !slices.Equal(old.SRT, o.SRT) || old.Expires.Before(o.Seen) {
		r.notify()
	}
	return nil
}

// Live returns the origins whose last heartbeat has not expired, sorted by
// ID so that callers get a stable order.
func (r *Registry) Live(now time.Time) []Origin {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Origin, 0, len(r.origins))
	for _, o := range r.origins {
		if now.Before(o.Expires) {
			out = append(out, *o)
		}
	}
	slices.SortFunc(out, func(a, b Origin) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Changed returns a channel closed at the next change of membership.
// Expiry is not a change it sees: readers also look again on a timer.
func (r *Registry) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Registry) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// dropExpired forgets origins that expired; r.mu is held.
func (r *Registry) dropExpired(now time.Time) {
	for id, o := range r.origins {
		if !now.Before(o.Expires) {
			delete(r.origins, id)
		}
	}
}
