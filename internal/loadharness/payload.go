package loadharness

import "encoding/binary"

// PayloadSize is what every generated packet carries: seven MPEG-TS
// packets, as SRT encoders send.
const PayloadSize = 1316

// NewPayload returns a buffer of PayloadSize bytes with a TS-like fill.
func NewPayload() []byte {
	b := make([]byte, PayloadSize)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// StampSeq writes the packet's sequence number into its first 8 bytes.
func StampSeq(b []byte, seq uint64) { binary.BigEndian.PutUint64(b, seq) }

// SeqTracker counts what a receiver got of a numbered stream that starts
// at sequence 0. SRT delivers in order, so a number above the next
// expected one means the packets between were never delivered.
type SeqTracker struct {
	Packets uint64 // datagrams read, whatever their number
	Bytes   uint64
	Missing uint64 // numbers skipped over
	Late    uint64 // numbers at or below one already seen (duplicates, reordering)
	next    uint64
}

// Add records one received payload.
func (t *SeqTracker) Add(b []byte) {
	t.Packets++
	t.Bytes += uint64(len(b))
	if len(b) < 8 {
		t.Late++
		return
	}
	seq := binary.BigEndian.Uint64(b)
	switch {
	case seq == t.next:
		t.next++
	case seq > t.next:
		t.Missing += seq - t.next
		t.next = seq + 1
	default:
		t.Late++
	}
}

// Unique is the number of distinct packets delivered in order.
func (t *SeqTracker) Unique() uint64 { return t.Packets - t.Late }
