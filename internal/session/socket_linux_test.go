package session

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a listener the way Caddy does (SO_REUSEPORT).
func listen(t *testing.T, network, addr string) net.PacketConn {
	t.Helper()
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func readWithin(c interface {
	SetReadDeadline(time.Time) error
	Read([]byte) (int, error)
}, d time.Duration) (string, bool) {
	c.SetReadDeadline(time.Now().Add(d))
	b := make([]byte, 100)
	n, err := c.Read(b)
	if err != nil {
		return "", false
	}
	return string(b[:n]), true
}

// TestDialFromTakesCallerTraffic checks, on this kernel, the property the
// fast path rests on: once a session socket is connected to a caller, that
// caller's datagrams reach it and not the listener, other callers still
// reach the listener, replies come from the listener's port, and the
// session socket keeps receiving after the listener is closed (a reload).
func TestDialFromTakesCallerTraffic(t *testing.T) {
	for _, tc := range []struct{ name, network, listen, dial string }{
		{"wildcard-dualstack-v4caller", "udp", ":0", "127.0.0.1"},
		{"wildcard-dualstack-v6caller", "udp", ":0", "::1"},
		{"wildcard-v4", "udp4", "0.0.0.0:0", "127.0.0.1"},
		{"specific-v4", "udp4", "127.0.0.1:0", "127.0.0.1"},
		{"specific-v6", "udp6", "[::1]:0", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := listen(t, tc.network, tc.listen)
			port := ln.LocalAddr().(*net.UDPAddr).Port
			target := net.JoinHostPort(tc.dial, strconv.Itoa(port))
			caller, err := net.Dial("udp", target)
			if err != nil {
				t.Fatal(err)
			}
			defer caller.Close()
			other, err := net.Dial("udp", target)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			callerAddr := netip.MustParseAddrPort(caller.LocalAddr().String())

			sess, _, err := DialFrom(ln.LocalAddr(), callerAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()

			caller.Write([]byte("to-session"))
			if got, ok := readWithin(sess, time.Second); !ok || got != "to-session" {
				t.Fatalf("session socket got %q, %v", got, ok)
			}
			for i := 0; i < 20; i++ {
				other.Write([]byte("to-listener"))
				ln.SetReadDeadline(time.Now().Add(time.Second))
				b := make([]byte, 100)
				n, from, err := ln.ReadFrom(b)
				if err != nil || string(b[:n]) != "to-listener" || from.String() == caller.LocalAddr().String() {
					t.Fatalf("listener got %q from %v: %v", b[:n], from, err)
				}
			}
			sess.Write([]byte("reply"))
			if got, ok := readWithin(caller.(*net.UDPConn), time.Second); !ok || got != "reply" {
				t.Fatalf("caller got %q, %v (reply must come from the dialled port)", got, ok)
			}
			ln.Close()
			caller.Write([]byte("after-reload"))
			if got, ok := readWithin(sess, time.Second); !ok || got != "after-reload" {
				t.Fatalf("after closing the listener the session socket got %q, %v", got, ok)
			}
		})
	}
}

// What a socket queued before it was connected comes back from
// drainStrays, each datagram with its sender: the datagrams DialFrom
// may catch between its bind and its connect.
func TestDrainStrays(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	port := sa.(*unix.SockaddrInet4).Port
	target := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	var senders []*net.UDPConn
	for i := range 3 {
		c, err := net.DialUDP("udp", nil, target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{byte('a' + i)})
		senders = append(senders, c)
	}
	// Connect to the first sender, as DialFrom connects to its caller.
	caller := senders[0].LocalAddr().(*net.UDPAddr)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: caller.Port}); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "session")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	strays, err := drainStrays(fc.(*net.UDPConn))
	if err != nil {
		t.Fatal(err)
	}
	if len(strays) != 3 {
		t.Fatalf("drained %d datagrams, want 3", len(strays))
	}
	for i, st := range strays {
		want := senders[i].LocalAddr().(*net.UDPAddr).AddrPort()
		if st.From != want || string(st.Data) != string(rune('a'+i)) {
			t.Errorf("stray %d: %q from %v, want %q from %v", i, st.Data, st.From, string(rune('a'+i)), want)
		}
	}
	// Connected now: another sender's datagram no longer lands here.
	senders[1].Write([]byte("late"))
	time.Sleep(50 * time.Millisecond)
	if more, _ := drainStrays(fc.(*net.UDPConn)); len(more) != 0 {
		t.Errorf("a connected socket took %d more datagrams from others", len(more))
	}
}
