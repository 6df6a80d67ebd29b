package session

import (
	"net"

	"golang.org/x/sys/unix"
)

// The batching brake (see reactor.relay) ends batching when a socket has
// more queued than one wake-up takes from it: pumpRounds batches of
// batchSize, 128 datagrams. With Linux's default receive buffer
// (net.core.rmem_default, 212992 bytes) a socket holds about 92
// full-size datagrams and drops the rest: the brake could never fire,
// and a flood waiting for the next tick was lost instead. Session
// sockets are therefore sized to hold holdDatagrams.

const (
	// holdDatagrams is twice what trips the brake: room for what arrives
	// while a tick is awaited on top of it.
	holdDatagrams = 2 * pumpRounds * batchSize
	// datagramCharge is what the kernel counts against the buffer for a
	// full-size SRT datagram (1316 bytes of payload): its buffer's true
	// size, about 2.3 KB on loopback and more behind some NIC drivers.
	datagramCharge = 4096
	// recvBufferBytes is the receive buffer a session socket asks for.
	recvBufferBytes = holdDatagrams * datagramCharge
)

// sizeRecvBuffer grows c's receive buffer to recvBufferBytes where it is
// smaller. SO_RCVBUF is capped by net.core.rmem_max (the kernel doubles
// what it grants, for its own overhead); a process with CAP_NET_ADMIN may
// go past the cap with SO_RCVBUFFORCE. Best effort: a smaller buffer
// still relays.
func sizeRecvBuffer(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		have, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		if err != nil || have >= recvBufferBytes {
			return
		}
		// The kernel doubles the value set: ask for half.
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBufferBytes/2) == nil {
			return
		}
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, recvBufferBytes/2)
	})
}
