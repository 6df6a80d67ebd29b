package session

import "net/netip"

// A source is what one party controls: one IPv4 address, or one IPv6
// /64 (the smallest prefix a site is given; a host picks any of its
// 2^64 addresses at will). Per-source limits count by it.

// SourceOf returns the source an address belongs to, as an address: the
// IPv4 address itself, or the first address of the IPv6 /64.
func SourceOf(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is4() {
		return a
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a
	}
	return p.Addr()
}

// FromSource is the number of live sessions whose caller belongs to
// source (a SourceOf result).
func (r *Registry) FromSource(source netip.Addr) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.bySource[source]
}
