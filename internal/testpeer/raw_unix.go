//go:build unix

package testpeer

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// NewRawCallerFrom is NewRawCaller from a given local address: another
// source (e.g. "127.0.0.3:0", for per-source limits), or the address of
// another caller (SO_REUSEPORT), one caller address talking to two
// listeners as libsrt does when it multiplexes connections on one port.
func NewRawCallerFrom(t testing.TB, local, proxy string, socketID uint32) *RawCaller {
	t.Helper()
	la, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: la, Control: func(_, _ string, rc syscall.RawConn) error {
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
