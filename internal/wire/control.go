package wire

import (
	"encoding/binary"
	"errors"
)

// What a relay may pass on from one peer to the other. A peer's control
// packet reaches code in the other peer that trusts its shape (libsrt
// before 1.5.6 overflowed its stack on a lying key-material length and
// could be talked out of encryption); a relay that sees every packet can
// drop what no conforming peer sends, and nothing else.

// Reasons CheckControl refuses a control packet.
var (
	ErrControlShort = errors.New("srt: control packet body too short for its type")
	ErrControlShape = errors.New("srt: control packet body not shaped as its type requires")
	ErrSeqRange     = errors.New("srt: sequence number or range out of bounds")
	ErrKeyMaterial  = errors.New("srt: malformed key material message")
)

// User-defined control subtypes (header word 0, low 16 bits) that carry
// key material during a session (HaiCrypt's refresh and its answer).
const (
	UserKMREQ uint16 = 3
	UserKMRSP uint16 = 4
)

// Bounds of an ACK body: the acknowledged sequence number alone (light
// ACK) up to every field libsrt writes (full ACK, 7 words); libsrt's own
// receiver reads no more.
const (
	ackMinBody = 4
	ackMaxBody = 7 * 4
	seqMax     = 1<<31 - 1
	// seqHalf: two sequence numbers further apart than this (modulo
	// 2^31) cannot both be live in one SRT window.
	seqHalf = 1 << 30
)

// CheckControl reports whether a control packet is shaped as its type
// requires: lengths within the datagram and as SRT defines them,
// sequence numbers and ranges in bounds. Types a relay does not look into
// (handshake, keepalive, ACKACK, SHUTDOWN, congestion, peer error, other
// user subtypes) pass. A data packet passes.
func CheckControl(b []byte) error {
	if !IsControl(b) {
		return nil
	}
	body := b[HeaderLen:]
	switch ControlTypeOf(b) {
	case CtrlACK:
		if len(body) < ackMinBody {
			return ErrControlShort
		}
		if len(body)%4 != 0 || len(body) > ackMaxBody {
			return ErrControlShape
		}
		if binary.BigEndian.Uint32(body) > seqMax {
			return ErrSeqRange
		}
	case CtrlNAK:
		return checkLossList(body)
	case CtrlDropReq:
		if len(body) < 8 {
			return ErrControlShort
		}
		first, last := binary.BigEndian.Uint32(body), binary.BigEndian.Uint32(body[4:])
		if first > seqMax || last > seqMax || seqSpan(first, last) >= seqHalf {
			return ErrSeqRange
		}
	case CtrlUser:
		switch binary.BigEndian.Uint16(b[2:4]) {
		case UserKMREQ:
			return CheckKeyMaterial(body)
		case UserKMRSP:
			if len(body) == 4 {
				return nil // an error status instead of the echoed material
			}
			return CheckKeyMaterial(body)
		}
	}
	return nil
}

// seqSpan is how far last is ahead of first, modulo 2^31.
func seqSpan(first, last uint32) uint32 { return (last - first) & seqMax }

// checkLossList checks a NAK's loss list: single sequence numbers, and
// ranges as a first number with the top bit set followed by a last one
// without it, not before the first.
func checkLossList(body []byte) error {
	if len(body) < 4 {
		return ErrControlShort
	}
	if len(body)%4 != 0 {
		return ErrControlShape
	}
	for i := 0; i < len(body); i += 4 {
		w := binary.BigEndian.Uint32(body[i:])
		if w&0x80000000 == 0 {
			continue
		}
		if i+8 > len(body) {
			return ErrControlShape
		}
		i += 4
		last := binary.BigEndian.Uint32(body[i:])
		if last > seqMax || seqSpan(w&seqMax, last) >= seqHalf {
			return ErrSeqRange
		}
	}
	return nil
}

// Key material message (HaiCrypt, the KMREQ/KMRSP body), as libsrt
// writes it: version 1, packet type 2 (KM), signature 0x2029.
const (
	kmHeaderLen  = 16
	kmWrapExtra  = 8 // AES key wrap adds one 64-bit block
	kmMaxSaltLen = 16
)

// CheckKeyMaterial checks a key material message: its fixed words, a
// salt of at most 16 bytes, keys of 16, 24 or 32 bytes (one, or two
// during a refresh), and a body exactly as long as those say.
func CheckKeyMaterial(km []byte) error {
	if len(km) < kmHeaderLen {
		return ErrKeyMaterial
	}
	if km[0] != 0x12 || binary.BigEndian.Uint16(km[1:3]) != 0x2029 {
		return ErrKeyMaterial
	}
	nkeys := 0
	switch km[3] & 0x03 {
	case 1, 2:
		nkeys = 1
	case 3:
		nkeys = 2
	default:
		return ErrKeyMaterial
	}
	if km[3]&^0x03 != 0 || km[8] > 4 || km[9] > 1 || km[10] > 2 {
		return ErrKeyMaterial
	}
	slen, klen := int(km[14])*4, int(km[15])*4
	if slen > kmMaxSaltLen {
		return ErrKeyMaterial
	}
	switch klen {
	case 16, 24, 32:
	default:
		return ErrKeyMaterial
	}
	if len(km) != kmHeaderLen+slen+kmWrapExtra+nkeys*klen {
		return ErrKeyMaterial
	}
	return nil
}
