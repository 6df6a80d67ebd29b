package session

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// DialFrom opens a UDP socket bound to local, the address and port of the
// listener the caller dialled, and connected to the caller. SO_REUSEPORT
// (which Caddy sets on its own UDP listeners) lets it share the port; being
// connected, it takes every datagram from that caller ahead of the
// listener, its replies leave from the listener's port, and it lives on
// when a config reload closes the listener.
func DialFrom(local net.Addr, caller netip.AddrPort) (*net.UDPConn, error) {
	laddr, ok := local.(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("session socket: listener address %v is not UDP", local)
	}
	d := net.Dialer{LocalAddr: laddr, Control: reusePort}
	// "udp" lets Go pick the family from both addresses: a dual-stack
	// "[::]" listener gets a dual-stack session socket, so both sit in one
	// SO_REUSEPORT group even for an IPv4 caller.
	c, err := d.Dial("udp", caller.String())
	if err != nil {
		return nil, fmt.Errorf("session socket from %s to %s: %w", laddr, caller, err)
	}
	return c.(*net.UDPConn), nil
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
