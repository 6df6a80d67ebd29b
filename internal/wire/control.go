package wire

import (
	"encoding/binary"
	"errors"
)

// What a relay may pass on from one peer to the other. A peer's control
// packet reaches code in the other peer that trusts its shape: libsrt
// before 1.5.6 read past the payload of a short DROPREQ or of a NAK ending
// in an open range, overflowed its stack on a key-material message longer
// than it allows, and drops its own security state (or the whole
// connection) on key material or loss ranges it cannot parse. A relay that
// sees every packet can drop what no conforming peer sends, and nothing
// else. Each check below names the libsrt check it mirrors (srtcore/core.cpp,
// srtcore/crypto.cpp, haicrypt/); docs/hostile-input.md lists them with the
// release each appeared in. What libsrt checks against its own send or
// receive state (an ACK or loss beyond the last packet sent, a drop past
// the receive buffer) needs that state and is left to the peer.
//
// One rule is stricter than libsrt 1.5.6: ACK, NAK and DROPREQ bodies must
// be whole words. libsrt ignores a partial last word; gosrt refuses such a
// NAK, no peer sends one, and libsrt's open pull request #3323 refuses
// every control packet that is not word-aligned.

// Reasons CheckControl refuses a control packet.
var (
	ErrControlShort = errors.New("srt: control packet body too short for its type")
	ErrControlShape = errors.New("srt: control packet body not shaped as its type requires")
	ErrSeqRange     = errors.New("srt: sequence number or range out of bounds")
	ErrKeyMaterial  = errors.New("srt: malformed key material message")
)

// User-defined control subtypes (header word 0, low 16 bits): the HSv4
// handshake extensions and the key material refresh and its answer.
const (
	UserHSREQ uint16 = 1
	UserHSRSP uint16 = 2
	UserKMREQ uint16 = 3
	UserKMRSP uint16 = 4
)

const (
	// ackLite is the body of a light ACK (the sequence number alone);
	// any other ACK carries at least ackSmall (sequence, RTT, RTT
	// variance, buffer left). libsrt reads the buffer-left word of every
	// ACK that is not light before it looks at the length, and ignores
	// words past those it knows (it sends up to 8 words, to 1.0.2 peers),
	// so there is no maximum.
	ackLite  = 4
	ackSmall = 16
	// hsv4Min is the shortest HSREQ/HSRSP body libsrt takes (version and
	// flags, SRT_CMD_HSREQ_MINSZ / SRT_CMD_HSRSP_MINSZ).
	hsv4Min = 8
	seqMax  = 1<<31 - 1
	// seqTH is libsrt's CSeqNo::m_iSeqNoTH: two sequence numbers further
	// apart than this compare the other way round the wrap.
	seqTH = 0x3FFFFFFF
)

// SRT_KM_STATE values a KMRSP may report instead of echoing the key
// material: unsecured, securing, secured, no secret, bad secret, bad
// crypto mode (1.5.2 and later). libsrt treats any other as an internal
// error of its peer.
const kmStateMax = 5

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
		// core.cpp processCtrlAck reads word 0, and word 3 of any ACK that
		// is not light, before its own length check.
		if len(body) < ackLite || len(body) != ackLite && len(body) < ackSmall {
			return ErrControlShort
		}
		if len(body)%4 != 0 {
			return ErrControlShape
		}
		// processCtrlAck: a negative ACK is "invalid ACK value (IGNORED)".
		if binary.BigEndian.Uint32(body) > seqMax {
			return ErrSeqRange
		}
	case CtrlNAK:
		return checkLossList(body)
	case CtrlDropReq:
		// processCtrlDropReq reads two words (checked since 1.5.6).
		if len(body) < 8 {
			return ErrControlShort
		}
		if len(body)%4 != 0 {
			return ErrControlShape
		}
		return checkRange(binary.BigEndian.Uint32(body), binary.BigEndian.Uint32(body[4:]))
	case CtrlUser:
		switch binary.BigEndian.Uint16(b[2:4]) {
		case UserHSREQ, UserHSRSP:
			if len(body) < hsv4Min {
				return ErrControlShort
			}
		case UserKMREQ:
			return CheckKeyMaterial(body)
		case UserKMRSP:
			if len(body) == 4 {
				// An error status instead of the echoed material.
				if binary.BigEndian.Uint32(body) > kmStateMax {
					return ErrKeyMaterial
				}
				return nil
			}
			// Anything else must echo a KMREQ the other side sent, so
			// is shaped as one (libsrt takes nothing else: 1.5.6 refuses
			// odd or oversized lengths, and material that matches none it
			// sent marks its keys bad).
			return CheckKeyMaterial(body)
		}
	}
	return nil
}

// seqcmp is libsrt's CSeqNo::seqcmp for sequence numbers (31 bits):
// positive when a is after b, with the comparison turned round when they
// are further apart than seqTH.
func seqcmp(a, b uint32) int64 {
	d := int64(a) - int64(b)
	if d < seqTH && d > -seqTH {
		return d
	}
	return -d
}

// checkRange checks a first..last range as the NAK loss list and DROPREQ
// carry it: both sequence numbers (no top bit), first not after last.
// libsrt breaks the connection on a NAK range whose first is after its
// last (processCtrlLossReport). It does not check a DROPREQ's, but no
// libsrt sender builds one backwards, and its receive buffer's
// dropMessage then walks round the wrap, dropping nearly every entry.
func checkRange(first, last uint32) error {
	if first > seqMax || last > seqMax || seqcmp(first, last) > 0 {
		return ErrSeqRange
	}
	return nil
}

// checkLossList checks a NAK's loss list: single sequence numbers, and
// ranges as a first number with the top bit set followed by a last one
// without it, not before the first.
func checkLossList(body []byte) error {
	n := len(body)
	if n < 4 {
		return ErrControlShort
	}
	if n%4 != 0 {
		return ErrControlShape
	}
	for i := 0; i < n; i += 4 {
		w := binary.BigEndian.Uint32(body[i:])
		if w&0x80000000 == 0 {
			continue
		}
		// processCtrlLossReport: a range start in the last word is
		// discarded since 1.5.6 (before, libsrt read past the payload).
		if i+8 > n {
			return ErrControlShape
		}
		i += 4
		if err := checkRange(w&seqMax, binary.BigEndian.Uint32(body[i:])); err != nil {
			return err
		}
	}
	return nil
}

// Key material message (HaiCrypt, the KMREQ/KMRSP body and the KMREQ
// handshake extension), haicrypt/hcrypt_msg.h.
const (
	kmHeaderLen  = 16
	kmWrapExtra  = 8 // AES key wrap adds one 64-bit block
	kmMaxSaltLen = 16
	kmVersionPT  = 0x12   // version 1, packet type 2 (keying material)
	kmSign       = 0x2029 // "HAI" as a PnP vendor ID
	kmSETSSRT    = 2      // stream encapsulation: MPEG-TS over SRT
	kmCipherCTR  = 2
	kmCipherGCM  = 4
	kmAuthNone   = 0
	kmAuthGCM    = 1
)

// CheckKeyMaterial checks a key material message as libsrt's receiver
// does before it touches its keys (hcryptMsg_SRT_ParseMsg and
// hcryptCtx_Rx_ParseKM in haicrypt/, processSrtMsg_KMREQ in
// srtcore/crypto.cpp): version, type and signature; at least one key;
// MPEG-TS/SRT encapsulation; a salt of at most 16 bytes; keys of 16, 24 or
// 32 bytes; a length exactly as those say (so word-aligned and at most
// 104 bytes, what 1.5.6 checks first); AES-CTR without authentication or
// AES-GCM with it. Like libsrt, it ignores KEKI and the reserved fields.
func CheckKeyMaterial(km []byte) error {
	if len(km) <= kmHeaderLen {
		return ErrKeyMaterial
	}
	if km[0] != kmVersionPT || binary.BigEndian.Uint16(km[1:3]) != kmSign {
		return ErrKeyMaterial
	}
	nkeys := 1
	switch km[3] & 0x03 {
	case 0:
		return ErrKeyMaterial
	case 3:
		nkeys = 2
	}
	if km[10] != kmSETSSRT {
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
	switch {
	case km[8] == kmCipherCTR && km[9] == kmAuthNone:
	case km[8] == kmCipherGCM && km[9] == kmAuthGCM:
	default:
		return ErrKeyMaterial
	}
	return nil
}
