//go:build unix

package testpeer

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// NewRawCallerFrom opens a UDP socket connected to the proxy from the
// local address of another (SO_REUSEPORT): one caller address talking to
// two listeners, as libsrt does when it multiplexes connections on one
// port.
func NewRawCallerFrom(t testing.TB, proxy string, local net.Addr, socketID uint32) *RawCaller {
	t.Helper()
	d := net.Dialer{LocalAddr: local, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("udp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &RawCaller{Conn: c.(*net.UDPConn), SocketID: socketID, t: t}
}
