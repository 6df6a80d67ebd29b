package srthandler

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// upstreamState is what the process knows about one upstream address. It
// is shared by every route and every configuration that names the
// address, so a reload neither resets a dead upstream to healthy nor
// forgets its sessions.
type upstreamState struct {
	addr     string
	sessions atomic.Int64 // live sessions, handshakes in progress included
	// dynamic states come from placeholder upstreams: any caller can make
	// new ones, so they are forgotten when idle and kept out of metrics.
	// A configuration that names the address statically makes it static
	// for good (see stateOf).
	dynamic atomic.Bool
	// claims counts, per source, the routes that have this upstream in
	// their pool now (GET /srt/upstreams).
	claims [numSources]atomic.Int32

	mu         sync.Mutex
	activeDown bool // the active checks' verdict
	passes     int  // consecutive successful probes while down
	fails      int  // consecutive failed probes while up
	failures   []time.Time
	downUntil  time.Time // passive verdict
	watchers   int
	stopProbe  context.CancelFunc
	probe      probeConfig
}

var upstreamStates sync.Map // host:port → *upstreamState

// stateOf returns the state of a configured (static) upstream address.
// One that a placeholder made first becomes static: its health and
// sessions carry over, and it is no longer forgotten when idle (the
// active checks and routes of the configuration hold it).
func stateOf(addr string) *upstreamState {
	for {
		v, _ := upstreamStates.LoadOrStore(addr, &upstreamState{addr: addr})
		s := v.(*upstreamState)
		if !s.dynamic.Load() {
			return s
		}
		s.mu.Lock()
		if cur, ok := upstreamStates.Load(addr); ok && cur == s {
			// Still the address's state: release cannot drop it now.
			if s.dynamic.CompareAndSwap(true, false) {
				dynamicStates.Add(-1)
			}
			s.mu.Unlock()
			return s
		}
		s.mu.Unlock() // forgotten meanwhile: take the address's state afresh
	}
}

// maxDynamicStates bounds the states kept for placeholder upstreams.
const maxDynamicStates = 4096

var dynamicStates atomic.Int64

// dynamicStateOf returns the state of an upstream address that came from
// a placeholder. Past maxDynamicStates new ones are not kept at all.
func dynamicStateOf(addr string) *upstreamState {
	if s, ok := upstreamStates.Load(addr); ok {
		return s.(*upstreamState)
	}
	fresh := &upstreamState{addr: addr}
	fresh.dynamic.Store(true)
	if dynamicStates.Load() >= maxDynamicStates {
		return fresh
	}
	s, loaded := upstreamStates.LoadOrStore(addr, fresh)
	if !loaded {
		dynamicStates.Add(1)
	}
	return s.(*upstreamState)
}

// acquire counts a session (or a handshake in progress) on u.
func (u *upstreamState) acquire() { u.sessions.Add(1) }

// release gives a session count back; an idle, healthy dynamic state is
// forgotten.
func (u *upstreamState) release() {
	if u.sessions.Add(-1) > 0 || !u.dynamic.Load() {
		return
	}
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	// Under mu, so that stateOf cannot make it static between the check
	// and the delete.
	healthy := !u.activeDown && !now.Before(u.downUntil)
	if healthy && u.dynamic.Load() && u.sessions.Load() == 0 && upstreamStates.CompareAndDelete(u.addr, u) {
		dynamicStates.Add(-1)
	}
}

// healthy reports whether new callers may be sent to u.
func (u *upstreamState) healthy(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !u.activeDown && !now.Before(u.downUntil)
}

// passivePolicy is the handler's passive health configuration.
type passivePolicy struct {
	maxFails     int
	failDuration time.Duration
}

// recordFailure counts a failed handshake; maxFails of them within
// failDuration mark u down for failDuration. It reports whether this
// failure marked it down.
func (u *upstreamState) recordFailure(now time.Time, p passivePolicy) bool {
	if p.failDuration <= 0 || p.maxFails <= 0 {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	keep := u.failures[:0]
	for _, t := range u.failures {
		if now.Sub(t) < p.failDuration {
			keep = append(keep, t)
		}
	}
	u.failures = append(keep, now)
	if len(u.failures) >= p.maxFails && !now.Before(u.downUntil) {
		u.downUntil = now.Add(p.failDuration)
		u.failures = u.failures[:0]
		return true
	}
	return false
}

// upstreamSource says where a route got an upstream from.
type upstreamSource uint8

const (
	sourceStatic upstreamSource = iota // a route's to
	sourceDNS                          // dynamic a, dynamic srv
	sourceSRS                          // dynamic srs
	numSources
)

func (s upstreamSource) String() string {
	return [...]string{"static", "dns", "srs"}[s]
}

// claim records that a route serves callers from u, as src says; the
// returned function takes it back.
func (u *upstreamState) claim(src upstreamSource) (release func()) {
	u.claims[src].Add(1)
	var once sync.Once
	return func() { once.Do(func() { u.claims[src].Add(-1) }) }
}

// inUse reports whether a route serves u or a session still uses it.
func (u *upstreamState) inUse() bool {
	return u.sessions.Load() > 0 || len(u.sources()) > 0
}

// sources lists where the routes that now serve u got it from.
func (u *upstreamState) sources() []string {
	var out []string
	for src := range numSources {
		if u.claims[src].Load() > 0 {
			out = append(out, src.String())
		}
	}
	return out
}

// upstream is one configured "to" address.
type upstream struct {
	raw string // as configured, placeholders included
	// addr is host:port, fixed at provisioning when raw has no placeholders.
	addr string
}

func parseUpstream(raw string) (*upstream, error) {
	u := &upstream{raw: raw}
	if strings.Contains(raw, "{") {
		return u, nil // resolved per caller
	}
	addr, err := dialAddress(raw)
	if err != nil {
		return nil, err
	}
	u.addr = addr
	return u, nil
}

// resolve returns the host:port to dial for one caller.
func (u *upstream) resolve(repl *caddy.Replacer) (string, error) {
	if u.addr != "" {
		return u.addr, nil
	}
	return dialAddress(repl.ReplaceAll(u.raw, ""))
}

// dialAddress turns "udp/host:port" or "host:port" into host:port.
func dialAddress(raw string) (string, error) {
	na, err := caddy.ParseNetworkAddressWithDefaults(raw, "udp", 0)
	if err != nil {
		return "", fmt.Errorf("upstream %q: %w", raw, err)
	}
	switch na.Network {
	case "udp", "udp4", "udp6":
	default:
		return "", fmt.Errorf("upstream %q: SRT runs over UDP, not %s", raw, na.Network)
	}
	if na.PortRangeSize() != 1 || na.StartPort == 0 {
		return "", fmt.Errorf("upstream %q: needs exactly one port", raw)
	}
	if na.Host == "" {
		return "", fmt.Errorf("upstream %q: needs a host", raw)
	}
	return net.JoinHostPort(na.Host, fmt.Sprint(na.StartPort)), nil
}
