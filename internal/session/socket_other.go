//go:build !linux

package session

import (
	"errors"
	"net"
	"net/netip"
)

// DialFrom is only implemented on Linux; elsewhere sessions relay through
// the connection they came in on.
func DialFrom(net.Addr, netip.AddrPort) (*net.UDPConn, []Stray, error) {
	return nil, nil, errors.ErrUnsupported
}
