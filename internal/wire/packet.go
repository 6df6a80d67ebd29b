// Package wire is a pure codec for the parts of SRT a stream-ID-routing relay
// touches: the 16-byte packet header, the handshake CIF with its extension
// blocks, stream IDs, rejections and SHUTDOWN. It does no I/O and imports
// nothing from Caddy, so it can be fuzzed and reasoned about on its own.
//
// Every decoder bounds every read by the length of the slice it is given:
// a length field in a datagram is a claim, never a fact.
package wire

import (
	"encoding/binary"
	"errors"
)

// HeaderLen is the size of every SRT packet header.
const HeaderLen = 16

// MaxDatagram is the largest datagram the relay reads in one call. SRT
// packets never exceed the MTU (at most 1500 bytes), but reading with a
// larger buffer keeps a hostile oversized datagram from being split.
const MaxDatagram = 9000

// MaxMTU is the largest MTU an SRT peer may advertise.
const MaxMTU = 1500

var (
	// ErrShort reports a datagram shorter than the structure it should hold.
	ErrShort = errors.New("srt: datagram too short")
	// ErrNotHandshake reports a datagram that is not a handshake control packet.
	ErrNotHandshake = errors.New("srt: not a handshake packet")
)

// ControlType is the type of an SRT control packet (header word 0, bits 16–30).
type ControlType uint16

// Control packet types.
const (
	CtrlHandshake  ControlType = 0x0000
	CtrlKeepalive  ControlType = 0x0001
	CtrlACK        ControlType = 0x0002
	CtrlNAK        ControlType = 0x0003
	CtrlCongestion ControlType = 0x0004
	CtrlShutdown   ControlType = 0x0005
	CtrlACKACK     ControlType = 0x0006
	CtrlDropReq    ControlType = 0x0007
	CtrlPeerError  ControlType = 0x0008
	CtrlUser       ControlType = 0x7FFF
)

func (t ControlType) String() string {
	switch t {
	case CtrlHandshake:
		return "handshake"
	case CtrlKeepalive:
		return "keepalive"
	case CtrlACK:
		return "ack"
	case CtrlNAK:
		return "nak"
	case CtrlCongestion:
		return "congestion"
	case CtrlShutdown:
		return "shutdown"
	case CtrlACKACK:
		return "ackack"
	case CtrlDropReq:
		return "dropreq"
	case CtrlPeerError:
		return "peererror"
	case CtrlUser:
		return "user"
	}
	return "unknown"
}

// Header is a decoded SRT packet header.
type Header struct {
	// Control is true for control packets, false for data packets.
	Control bool
	// Type and Subtype are set for control packets.
	Type    ControlType
	Subtype uint16
	// Seq is the packet sequence number of a data packet.
	Seq uint32
	// Info is word 1: type-specific information for control packets,
	// message flags and number for data packets.
	Info uint32
	// Timestamp is in microseconds since the sender's socket started.
	Timestamp uint32
	// DestSocket is the SRT socket ID of the receiver; 0 only in a caller's
	// induction and conclusion.
	DestSocket uint32
}

// ParseHeader decodes the 16-byte header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShort
	}
	w0 := binary.BigEndian.Uint32(b[0:4])
	h := Header{
		Control:    w0&0x80000000 != 0,
		Info:       binary.BigEndian.Uint32(b[4:8]),
		Timestamp:  binary.BigEndian.Uint32(b[8:12]),
		DestSocket: binary.BigEndian.Uint32(b[12:16]),
	}
	if h.Control {
		h.Type = ControlType(w0 >> 16 & 0x7FFF)
		h.Subtype = uint16(w0)
	} else {
		h.Seq = w0 & 0x7FFFFFFF
	}
	return h, nil
}

// Append encodes h and appends it to dst.
func (h Header) Append(dst []byte) []byte {
	var w0 uint32
	if h.Control {
		w0 = 0x80000000 | uint32(h.Type&0x7FFF)<<16 | uint32(h.Subtype)
	} else {
		w0 = h.Seq & 0x7FFFFFFF
	}
	dst = binary.BigEndian.AppendUint32(dst, w0)
	dst = binary.BigEndian.AppendUint32(dst, h.Info)
	dst = binary.BigEndian.AppendUint32(dst, h.Timestamp)
	return binary.BigEndian.AppendUint32(dst, h.DestSocket)
}

// The helpers below read single header fields of a datagram without
// decoding the rest; the relay uses them per packet. Each returns the zero
// value for a datagram too short to hold the field.

// IsControl reports whether b is a control packet.
func IsControl(b []byte) bool { return len(b) >= HeaderLen && b[0]&0x80 != 0 }

// ControlTypeOf returns the control type of b; check IsControl first.
func ControlTypeOf(b []byte) ControlType {
	if len(b) < HeaderLen {
		return 0
	}
	return ControlType(binary.BigEndian.Uint16(b[0:2]) & 0x7FFF)
}

// DestSocketOf returns the destination socket ID of b.
func DestSocketOf(b []byte) uint32 {
	if len(b) < HeaderLen {
		return 0
	}
	return binary.BigEndian.Uint32(b[12:16])
}

// SetDestSocket overwrites the destination socket ID of b in place.
func SetDestSocket(b []byte, id uint32) {
	if len(b) >= HeaderLen {
		binary.BigEndian.PutUint32(b[12:16], id)
	}
}

// IsShutdown reports whether b is a SHUTDOWN control packet.
func IsShutdown(b []byte) bool { return IsControl(b) && ControlTypeOf(b) == CtrlShutdown }

// AppendShutdown appends a SHUTDOWN packet for the peer socket dest. Like
// libsrt it carries four bytes of padding after the header.
func AppendShutdown(dst []byte, dest, timestamp uint32) []byte {
	dst = Header{Control: true, Type: CtrlShutdown, Timestamp: timestamp, DestSocket: dest}.Append(dst)
	return append(dst, 0, 0, 0, 0)
}
