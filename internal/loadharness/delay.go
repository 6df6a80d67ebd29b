package loadharness

import (
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Delay probes measure what a path adds to each packet's trip: a caller
// sends SRT data packets that carry their send time, and the origin notes
// when the kernel received each one (SO_TIMESTAMPNS). Both ends live in
// the harness's process, on one clock, even when they sit in different
// network namespaces. libsrt peers cannot tell it: their receiver hands
// packets over on the sender's schedule plus the latency (TSBPD), which
// hides any delay below the latency.

// probeMagic starts a probe's payload; the send time (Unix nanoseconds)
// follows.
var probeMagic = [8]byte{'S', 'R', 'T', 'D', 'E', 'L', 'A', 'Y'}

// probeHeader is the SRT header and what the payload must hold.
const probeHeader = wire.HeaderLen + len(probeMagic) + 8

// maxProbes bounds what an origin keeps.
const maxProbes = 1 << 20

// appendProbe appends a data packet for dest, numbered seq, of size
// bytes (at least probeHeader), sent at sent.
func appendProbe(dst []byte, seq, dest, timestamp uint32, sent time.Time, size int) []byte {
	start := len(dst)
	// PP=11: the packet is a whole message; message number seq too.
	dst = wire.Header{Seq: seq, Info: 0xC0000000 | seq&0x03FFFFFF, Timestamp: timestamp, DestSocket: dest}.Append(dst)
	dst = append(dst, probeMagic[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(sent.UnixNano()))
	for len(dst)-start < size {
		dst = append(dst, 0)
	}
	return dst
}

// probeSent returns the send time a probe carries.
func probeSent(p []byte) (time.Time, bool) {
	if len(p) < probeHeader || wire.IsControl(p) || [8]byte(p[wire.HeaderLen:wire.HeaderLen+8]) != probeMagic {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(p[wire.HeaderLen+8:]))), true
}

// SendProbes sends n probes of size bytes, one every interval, on a fixed
// schedule (a late one does not push the rest back).
func (k *KeepaliveCaller) SendProbes(n int, every time.Duration, size int) error {
	if size < probeHeader {
		return fmt.Errorf("probe size %d: at least %d", size, probeHeader)
	}
	buf := make([]byte, 0, size)
	next := time.Now()
	for i := range n {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(every)
		now := time.Now()
		buf = appendProbe(buf[:0], uint32(i), k.peer, k.now(), now, size)
		if _, err := k.conn.Write(buf); err != nil {
			return fmt.Errorf("probe %d: %w", i, err)
		}
	}
	return nil
}

// timestamping asks the kernel for each datagram's receive time.
func timestamping(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return err
	}
	return serr
}

// receivedAt reads the kernel's receive time from a datagram's control
// messages; zero if there is none.
func receivedAt(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return time.Unix(sec, nsec)
		}
	}
	return time.Time{}
}

// Delays is what probes took to arrive, sorted.
type Delays []time.Duration

// Quantile returns the q-quantile (0 ≤ q ≤ 1); zero for none.
func (d Delays) Quantile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// ProbeDelays returns the delays of the probes received so far, sorted,
// and forgets them.
func (o *KeepaliveOrigin) ProbeDelays() Delays {
	o.mu.Lock()
	d := o.delays
	o.delays = nil
	o.mu.Unlock()
	slices.Sort(d)
	return d
}
