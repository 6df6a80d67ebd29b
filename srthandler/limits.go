package srthandler

import (
	"errors"
	"net/netip"
	"sync"
)

// Limit defaults.
const (
	DefaultMaxSessions     = 10000
	DefaultMaxPending      = 1024
	DefaultMaxPendingPerIP = 32
)

// Limits cap what callers may hold of the process.
type Limits struct {
	// MaxSessions caps the live sessions of the process; callers beyond it
	// are rejected with overload (1402). Default 10000.
	MaxSessions int `json:"max_sessions,omitempty"`
	// MaxPending caps the handshakes in progress in the process, and
	// MaxPendingPerIP those from one source IP. Over either, an induction
	// is still answered but nothing waits for its conclusion, and a
	// conclusion is rejected with overload. Defaults 1024 and 32.
	MaxPending      int `json:"max_pending,omitempty"`
	MaxPendingPerIP int `json:"max_pending_per_ip,omitempty"`
}

func (l *Limits) provision() {
	defaultTo(&l.MaxSessions, DefaultMaxSessions)
	defaultTo(&l.MaxPending, DefaultMaxPending)
	defaultTo(&l.MaxPendingPerIP, DefaultMaxPendingPerIP)
}

func (l *Limits) validate() error {
	if l.MaxSessions < 0 || l.MaxPending < 0 || l.MaxPendingPerIP < 0 {
		return errors.New("srt: counts and limits must not be negative")
	}
	return nil
}

// pendingTable counts the handshakes being replayed to upstreams, in
// total and per source IP (the caller proved its address with our cookie).
// Each holds one goroutine, an upstream socket and two pendingBuf buffers.
// Handlers that merely wait for a caller's next datagram are not limited:
// caddy-l4 runs a goroutine per caller address anyway, and a handler that
// stops reading early can hang caddy-l4's whole listener.
type pendingTable struct {
	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
}

var splicing = &pendingTable{byIP: make(map[netip.Addr]int)}

// acquire takes a slot for ip if both limits allow it; release gives it back.
func (p *pendingTable) acquire(ip netip.Addr, maxTotal, maxPerIP int) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total >= maxTotal || p.byIP[ip] >= maxPerIP {
		return nil, false
	}
	p.total++
	p.byIP[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.total--
			if p.byIP[ip]--; p.byIP[ip] <= 0 {
				delete(p.byIP, ip)
			}
		})
	}, true
}

func (p *pendingTable) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}
