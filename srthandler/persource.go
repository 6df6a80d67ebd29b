package srthandler

import (
	"errors"
	"net/netip"

	"github.com/srtroute/caddy-l4-srt/internal/session"
)

// DefaultMaxSessionsPerIP is far above what one site sends through one
// address: a rack of encoders behind one NAT publishes tens of streams,
// a large playout centre a few hundred; and far below max_sessions, so
// that no single source can take the proxy.
const DefaultMaxSessionsPerIP = 1000

// SourceLimits cap what one source may hold: one IPv4 address, or one
// IPv6 /64 (session.SourceOf), since a host picks any address of its /64.
type SourceLimits struct {
	// MaxSessionsPerIP caps the live sessions and handshakes in progress
	// of one source; its callers beyond it are rejected with overload
	// (1402). Default 1000.
	MaxSessionsPerIP int `json:"max_sessions_per_ip,omitempty"`
}

func (l *SourceLimits) provision() {
	defaultTo(&l.MaxSessionsPerIP, DefaultMaxSessionsPerIP)
}

func (l *SourceLimits) validate() error {
	if l.MaxSessionsPerIP < 0 {
		return errors.New("srt: max_sessions_per_ip must not be negative")
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
