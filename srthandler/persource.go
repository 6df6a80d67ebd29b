package srthandler

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
)

// DefaultMaxSessionsPerIP is far above what one site sends through one
// address: a rack of encoders behind one NAT publishes tens of streams,
// a large playout centre a few hundred; and far below max_sessions, so
// that no single source can take the proxy.
const DefaultMaxSessionsPerIP = 1000

// DefaultHandshakeRatePerIP is the conclusions a second one source may
// have routed, with as many at once: every session max_sessions_per_ip
// allows a source (a playout centre's players behind one NAT) may
// reconnect together after an outage. What it bounds is work on the
// handshake path; max_pending_per_ip bounds what is held.
const DefaultHandshakeRatePerIP = 1000

// SourceLimits cap what one source may hold: one IPv4 address, or one
// IPv6 /64 (session.SourceOf), since a host picks any address of its /64.
type SourceLimits struct {
	// MaxSessionsPerIP caps the live sessions and handshakes in progress
	// of one source; its callers beyond it are rejected with overload
	// (1402). Default 1000.
	MaxSessionsPerIP int `json:"max_sessions_per_ip,omitempty"`
	// HandshakeRatePerIP caps the conclusions a second of one source that
	// are routed (a second's worth may come at once); beyond it callers
	// get overload (1402) before any upstream is tried. Default 1000.
	HandshakeRatePerIP int `json:"handshake_rate_per_ip,omitempty"`
}

func (l *SourceLimits) provision() {
	defaultTo(&l.MaxSessionsPerIP, DefaultMaxSessionsPerIP)
	defaultTo(&l.HandshakeRatePerIP, DefaultHandshakeRatePerIP)
}

func (l *SourceLimits) validate() error {
	if l.MaxSessionsPerIP < 0 || l.HandshakeRatePerIP < 0 {
		return errors.New("srt: max_sessions_per_ip and handshake_rate_per_ip must not be negative")
	}
	return nil
}

// sourceFull reports whether the source of caller, whose own handshake
// already holds a splicing slot, holds more than max_sessions_per_ip.
func (h *Handler) sourceFull(source netip.Addr) bool {
	return h.registry.FromSource(source)+splicing.countFor(source) > h.MaxSessionsPerIP
}

// countFor is the handshakes in progress of one source.
func (p *pendingTable) countFor(source netip.Addr) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byIP[source]
}

// sourceOf is the source a caller counts against.
func sourceOf(caller netip.AddrPort) netip.Addr { return session.SourceOf(caller.Addr()) }

// rateSlots is the size of the handshake rate table: fixed, so that many
// sources cost no more memory than few. Sources that share a slot share
// a budget until one of them replaces the other (then the newcomer
// starts full): a collision errs towards letting callers in.
const rateSlots = 4096

type rateSlot struct {
	source netip.Addr
	tokens float64
	last   time.Time
}

// rateTable holds a token bucket per source, in rateSlots slots.
type rateTable struct {
	mu    sync.Mutex
	seed  maphash.Seed
	slots [rateSlots]rateSlot
}

var handshakeRates = &rateTable{seed: maphash.MakeSeed()}

// allow takes one handshake from source's bucket of rate per second, as
// many at once.
func (t *rateTable) allow(source netip.Addr, rate int, now time.Time) bool {
	a := source.As16()
	i := maphash.Bytes(t.seed, a[:]) % rateSlots
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.slots[i]
	if s.source != source {
		*s = rateSlot{source: source, tokens: float64(rate), last: now}
	}
	s.tokens = min(float64(rate), s.tokens+now.Sub(s.last).Seconds()*float64(rate))
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// handshakeAllowed applies handshake_rate_per_ip to a caller's conclusion.
func (h *Handler) handshakeAllowed(caller netip.AddrPort, now time.Time) bool {
	return handshakeRates.allow(sourceOf(caller), h.HandshakeRatePerIP, now)
}
