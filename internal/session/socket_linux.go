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
//
// Between its bind and its connect the socket is an ordinary member of
// the listener's SO_REUSEPORT group, and the kernel may hand it datagrams
// of other callers (new callers' handshakes, under load). Those, and any
// of the caller's own that came in that instant, are returned as strays,
// for the caller of DialFrom to serve as the listener would have.
func DialFrom(local net.Addr, caller netip.AddrPort) (*net.UDPConn, []Stray, error) {
	laddr, ok := local.(*net.UDPAddr)
	if !ok {
		return nil, nil, fmt.Errorf("session socket: listener address %v is not UDP", local)
	}
	d := net.Dialer{LocalAddr: laddr, Control: reusePort}
	// "udp" lets Go pick the family from both addresses: a dual-stack
	// "[::]" listener gets a dual-stack session socket, so both sit in one
	// SO_REUSEPORT group even for an IPv4 caller.
	c, err := d.Dial("udp", caller.String())
	if err != nil {
		return nil, nil, fmt.Errorf("session socket from %s to %s: %w", laddr, caller, err)
	}
	conn := c.(*net.UDPConn)
	strays, err := drainStrays(conn)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("session socket from %s to %s: %w", laddr, caller, err)
	}
	return conn, strays, nil
}

// maxStrays bounds what drainStrays takes: the window it covers is two
// system calls long.
const maxStrays = 256

// drainStrays reads, without waiting, whatever the socket queued before it
// was connected. Once connected the kernel gives it only its caller's
// datagrams, so this empties the queue of strays for good.
func drainStrays(c *net.UDPConn) ([]Stray, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var strays []Stray
	buf := make([]byte, relayBuf)
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for len(strays) < maxStrays {
			n, from, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err == unix.EAGAIN || err == unix.EWOULDBLOCK {
				return true
			}
			if err == unix.ECONNREFUSED || err == unix.EINTR {
				continue
			}
			if err != nil {
				rerr = err
				return true
			}
			if ap, ok := addrPortOf(from); ok {
				strays = append(strays, Stray{From: ap, Data: append([]byte(nil), buf[:n]...)})
			}
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	return strays, err
}

func addrPortOf(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
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
