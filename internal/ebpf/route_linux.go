package ebpf

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// routeTimeout bounds the wait for the kernel's answer to a route query.
const routeTimeout = time.Second

// egressInterface asks the kernel (RTM_GETROUTE, as `ip route get` does)
// which interface a datagram to dst leaves by. With symmetric routing it
// is also the interface dst's datagrams come in on, which is where the
// program is attached. A local destination (the route's type is local,
// or the interface is a loopback) is no interface of ours to use. dst is
// an IPv4 address or an IPv6 one without a zone (Flow.family refuses
// link-local ones).
func egressInterface(dst netip.Addr) (*net.Interface, error) {
	family, bits := unix.AF_INET, 32
	if dst.Is6() {
		family, bits = unix.AF_INET6, 128
	}
	addr := dst.AsSlice()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("route to %s: netlink socket: %w", dst, err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(routeTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("route to %s: %w", dst, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("route to %s: netlink bind: %w", dst, err)
	}

	rtaLen := unix.SizeofRtAttr + len(addr)
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofRtMsg+rtaLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.RTM_GETROUTE)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // sequence
	rt := req[unix.NLMSG_HDRLEN:]
	rt[0] = byte(family)
	rt[1] = byte(bits) // rtm_dst_len
	attr := rt[unix.SizeofRtMsg:]
	ne.PutUint16(attr[0:], uint16(rtaLen))
	ne.PutUint16(attr[2:], unix.RTA_DST)
	copy(attr[4:], addr)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("route to %s: netlink send: %w", dst, err)
	}

	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return nil, fmt.Errorf("route to %s: netlink receive: %w", dst, err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return nil, fmt.Errorf("route to %s: %w", dst, err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if errno := int32(ne.Uint32(m.Data)); errno != 0 {
					return nil, fmt.Errorf("route to %s: %w", dst, syscall.Errno(-errno))
				}
			}
		case unix.RTM_NEWROUTE:
			if len(m.Data) < unix.SizeofRtMsg {
				continue
			}
			if typ := m.Data[7]; typ != unix.RTN_UNICAST { // rtm_type
				return nil, fmt.Errorf("route to %s: not a unicast route (type %d)", dst, typ)
			}
			attrs, err := syscall.ParseNetlinkRouteAttr(&m)
			if err != nil {
				return nil, fmt.Errorf("route to %s: %w", dst, err)
			}
			for _, a := range attrs {
				if a.Attr.Type == unix.RTA_OIF && len(a.Value) >= 4 {
					ifi, err := net.InterfaceByIndex(int(ne.Uint32(a.Value)))
					if err != nil {
						return nil, fmt.Errorf("route to %s: %w", dst, err)
					}
					if ifi.Flags&net.FlagLoopback != 0 {
						return nil, fmt.Errorf("route to %s: over loopback %s", dst, ifi.Name)
					}
					return ifi, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("route to %s: no output interface in the kernel's answer", dst)
}
