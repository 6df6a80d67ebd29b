package session

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func rcvbuf(t *testing.T, fd int) int {
	t.Helper()
	n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSessionSocketsHoldTheBrake: a session socket holds more full-size
// datagrams than the batching brake needs queued to fire
// (pumpRounds*batchSize); with Linux's default buffer it held about 92.
func TestSessionSocketsHoldTheBrake(t *testing.T) {
	send, recv := pipe(t)
	defer send.Close()
	defer recv.Close()
	sizeRecvBuffer(recv)
	brake := pumpRounds * batchSize
	payload := make([]byte, 1316)
	for range brake + 1 {
		if _, err := send.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	got := 0
	for {
		_ = recv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := recv.Read(buf); err != nil {
			break
		}
		got++
	}
	if got != brake+1 {
		t.Errorf("a session socket held %d of %d datagrams sent at once; the brake fires at %d", got, brake+1, brake)
	}

	// Start sizes both sockets of a session.
	ends := startRelayed(t, NewRegistry(), 0, 0)
	defer ends.s.End(EndKicked, nil)
	want := rcvbuf(t, fdOf(t, recv))
	for name, fd := range map[string]int{"caller": ends.s.pair.caller.fd, "upstream": ends.s.pair.upstream.fd} {
		if have := rcvbuf(t, fd); have < want {
			t.Errorf("%s socket of a session: receive buffer %d bytes, want %d", name, have, want)
		}
	}
}

func fdOf(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	_ = rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}
