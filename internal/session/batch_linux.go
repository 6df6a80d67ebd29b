package session

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The batches the reactor reads and writes datagrams in.

// mmsghdr is struct mmsghdr. Go pads the struct to the alignment of
// Msghdr, as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// batch is a set of datagram slots for recvmmsg or sendmmsg.
type batch struct {
	msgs [batchSize]mmsghdr
	iovs [batchSize]unix.Iovec
	bufs [batchSize][]byte // receive buffers; nil in a send batch
	k    int               // slots in use (send batch)
}

func newRecvBatch() *batch {
	b := &batch{}
	for i := range b.msgs {
		b.bufs[i] = make([]byte, relayBuf)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(relayBuf)
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

func newSendBatch() *batch {
	b := &batch{}
	for i := range b.msgs {
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

// recv reads up to batchSize datagrams without waiting.
func (b *batch) recv(fd int) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])),
		batchSize, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// datagram returns the i-th datagram recv read. One longer than the
// buffer arrives truncated; SRT never sends one.
func (b *batch) datagram(i int) []byte {
	return b.bufs[i][:min(int(b.msgs[i].n), relayBuf)]
}

func (b *batch) queue(p []byte) {
	iov := &b.iovs[b.k]
	if len(p) > 0 {
		iov.Base = &p[0]
	} else {
		iov.Base = nil
	}
	iov.SetLen(len(p))
	b.k++
}

// send writes the queued datagrams. An ICMP error left by an earlier
// datagram (the peer's port was closed for a moment) is consumed and the
// send retried; a full send buffer is waited on briefly; anything else
// drops the rest of the batch, as a lost datagram that SRT recovers.
func (b *batch) send(fd int) error {
	sent, refused, full := 0, 0, 0
	defer func() { b.k = 0 }()
	for sent < b.k {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[sent])),
			uintptr(b.k-sent), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == 0:
			sent += int(n)
			continue
		case e == unix.EINTR:
			continue
		case e == unix.ECONNREFUSED && refused < 2:
			refused++
			continue
		case e == unix.EAGAIN && full < 3:
			full++
			waitWritable(fd)
			continue
		}
		return fmt.Errorf("%d of %d datagrams not sent: %w", b.k-sent, b.k, e)
	}
	return nil
}
