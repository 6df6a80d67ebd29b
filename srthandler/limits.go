package srthandler

import (
	"net/netip"
	"sync"
)

// Limit defaults.
const (
	DefaultMaxSessions     = 10000
	DefaultMaxPending      = 1024
	DefaultMaxPendingPerIP = 32
)

// pendingTable counts handshakes in progress in this process, in total
// and per source IP. Two tables: handlers waiting for a caller's next
// datagram (one goroutine and one pendingBuf buffer each, limited in
// total only: one IP may have many ports), and handlers replaying a
// conclusion to an upstream (an upstream socket too; limited per IP as
// well, since the caller proved its address with our cookie).
type pendingTable struct {
	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
}

var (
	waiting  = &pendingTable{byIP: make(map[netip.Addr]int)}
	splicing = &pendingTable{byIP: make(map[netip.Addr]int)}
)

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
