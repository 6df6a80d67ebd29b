package wire

import "encoding/binary"

// ACK is what a full SRT ACK tells about the link, as measured by the
// peer that sends it (the receiver of the data it acknowledges).
type ACK struct {
	// RTT and RTTVar are in microseconds.
	RTT, RTTVar uint32
	// PacketRate is the receiving rate in packets per second, ByteRate in
	// bytes per second, and Capacity the estimated link capacity in
	// packets per second.
	PacketRate, ByteRate, Capacity uint32
}

// fullACKLen is the header plus the seven CIF words of a full ACK up to
// the receiving rate; light ACKs carry only the first word.
const fullACKLen = HeaderLen + 7*4

// ParseACK reads a full ACK control packet. Light and small ACKs, which
// carry no measurements, and anything else report false.
func ParseACK(b []byte) (ACK, bool) {
	if len(b) < fullACKLen || !IsControl(b) || ControlTypeOf(b) != CtrlACK {
		return ACK{}, false
	}
	c := b[HeaderLen:]
	return ACK{
		RTT:        binary.BigEndian.Uint32(c[4:8]),
		RTTVar:     binary.BigEndian.Uint32(c[8:12]),
		PacketRate: binary.BigEndian.Uint32(c[16:20]),
		Capacity:   binary.BigEndian.Uint32(c[20:24]),
		ByteRate:   binary.BigEndian.Uint32(c[24:28]),
	}, true
}
