package session

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr. Go pads the struct to the alignment of
// Msghdr, as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// recvBatch is a set of buffers that one recvmmsg fills.
type recvBatch struct {
	msgs [batchSize]mmsghdr
	iovs [batchSize]unix.Iovec
	bufs [batchSize][]byte
}

func newRecvBatch() *recvBatch {
	b := &recvBatch{}
	for i := range b.msgs {
		b.bufs[i] = make([]byte, relayBuf)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(relayBuf)
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

// recv reads up to batchSize datagrams without waiting.
func (b *recvBatch) recv(fd int) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])),
		batchSize, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// datagram returns the i-th datagram recv read. One longer than the
// buffer arrives truncated; SRT never sends one.
func (b *recvBatch) datagram(i int) []byte {
	return b.bufs[i][:min(int(b.msgs[i].n), relayBuf)]
}

// sendBatch is the datagrams bound for one socket, written with one
// sendmmsg.
//
// Datagrams of one size in a row leave as one message with UDP
// segmentation offload (UDP_SEGMENT): the kernel takes them through its
// UDP and IP send path once and cuts them into datagrams only at the
// device, or, over loopback, at the receiving socket. What goes on the
// wire is the same datagrams, in the same order; a stream's data packets
// are all one size, so a burst of them (gosrt sends ten at a time on its
// 10 ms clock) costs one trip instead of ten. Where a route cannot
// segment (a device without checksum offload, IPsec, a datagram larger
// than the path's MTU) the kernel refuses the message; it is then sent
// datagram by datagram, and so is everything after it on that socket.
type sendBatch struct {
	msgs  [batchSize]mmsghdr
	iovs  [batchSize]unix.Iovec // one per datagram queued, in order
	first [batchSize]int        // the datagram each message starts at
	ctrl  [batchSize][gsoCmsgRoom]byte
	k     int // datagrams queued
}

const (
	// gsoCmsgRoom holds a control message with the uint16 segment size:
	// at least unix.CmsgSpace(2), which is not a constant.
	gsoCmsgRoom = unix.SizeofCmsghdr + 8
	// gsoMaxBytes bounds a segmented message below what one IP packet
	// can carry (65507 bytes of UDP payload over IPv4).
	gsoMaxBytes = 60000
)

func newSendBatch() *sendBatch {
	b := &sendBatch{}
	for i := range b.ctrl {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b.ctrl[i][0]))
		h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
	}
	return b
}

func (b *sendBatch) queue(p []byte) {
	iov := &b.iovs[b.k]
	if len(p) > 0 {
		iov.Base = &p[0]
	} else {
		iov.Base = nil
	}
	iov.SetLen(len(p))
	b.k++
}

// build lays the queued datagrams from the from-th on out as messages,
// and returns how many. With gso, a run of datagrams of one size, which
// a shorter one may end, is one message.
func (b *sendBatch) build(from int, gso bool) int {
	m := 0
	for i := from; i < b.k; m++ {
		size := b.iovs[i].Len
		j := i + 1
		if gso && size > 0 {
			for total := size; j < b.k; j++ {
				n := b.iovs[j].Len
				if n == 0 || n > size || total+n > gsoMaxBytes {
					break
				}
				total += n
				if n < size {
					j++ // only the last segment may be short
					break
				}
			}
		}
		msg := &b.msgs[m].hdr
		msg.Iov = &b.iovs[i]
		msg.SetIovlen(j - i)
		if j-i > 1 {
			*(*uint16)(unsafe.Pointer(&b.ctrl[m][unix.SizeofCmsghdr])) = uint16(size)
			msg.Control = &b.ctrl[m][0]
			msg.SetControllen(gsoCmsgSpace)
		} else {
			msg.Control = nil
			msg.SetControllen(0)
		}
		b.first[m] = i
		i = j
	}
	return m
}

// gsoCmsgSpace is the length of the segment-size control message.
var gsoCmsgSpace = unix.CmsgSpace(2)

// sendmmsg is the system call; tests replace it to make the kernel
// refuse what they need refused.
var sendmmsg = func(fd int, msgs []mmsghdr) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
		uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}

// send writes the queued datagrams to dst. An ICMP error left by an
// earlier datagram (the peer's port was closed for a moment) is consumed
// and the send retried; a full send buffer is waited on briefly; a
// segmented message the route refuses is sent again datagram by
// datagram; anything else drops the rest of the batch, as a lost
// datagram that SRT recovers.
func (b *sendBatch) send(dst *rawSock) error {
	defer func() { b.k = 0 }()
	m := b.build(0, dst.gsoErr == nil && gsoSupported())
	sent, refused, full := 0, 0, 0 // in messages
	for sent < m {
		n, e := sendmmsg(dst.fd, b.msgs[sent:m])
		switch {
		case e == 0:
			sent += n
			continue
		case e == unix.EINTR:
			continue
		case e == unix.ECONNREFUSED && refused < 2:
			refused++
			continue
		case e == unix.EAGAIN && full < 3:
			full++
			waitWritable(dst.fd)
			continue
		case (e == unix.EIO || e == unix.EINVAL || e == unix.EMSGSIZE) && b.msgs[sent].hdr.Controllen > 0:
			dst.gsoErr = e
			m, sent = b.build(b.first[sent], false), 0
			continue
		}
		return fmt.Errorf("%d of %d datagrams not sent: %w", b.k-b.first[sent], b.k, e)
	}
	return nil
}

// gsoSupported reports whether the kernel knows UDP_SEGMENT (Linux 4.18
// and later). An older one would not refuse the control message but
// ignore it, and send each run as one long datagram.
var gsoSupported = sync.OnceValue(func() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	_, err = unix.GetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT)
	return err == nil
})
