package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// CIFLen is the size of the fixed handshake control information field.
const CIFLen = 48

// HandshakeLen is the size of a handshake packet without extensions.
const HandshakeLen = HeaderLen + CIFLen

// Magic is the SRT magic an HSv5 listener puts in the extension field of its
// induction response.
const Magic = 0x4A17

// HandshakeType is the request type of a handshake (CIF offset 36).
// Values of 1000 and above, below the AGREEMENT..CONCLUSION range, are
// rejections carrying a reason.
type HandshakeType uint32

// Handshake types.
const (
	HSWaveahand  HandshakeType = 0
	HSInduction  HandshakeType = 1
	HSDone       HandshakeType = 0xFFFFFFFD
	HSAgreement  HandshakeType = 0xFFFFFFFE
	HSConclusion HandshakeType = 0xFFFFFFFF
)

// IsRejection reports whether t carries a rejection reason.
func (t HandshakeType) IsRejection() bool { return t >= 1000 && t < HSDone }

// Reason returns the rejection reason of a rejection handshake type.
func (t HandshakeType) Reason() RejectReason {
	if !t.IsRejection() {
		return 0
	}
	return RejectReason(t - 1000)
}

func (t HandshakeType) String() string {
	switch t {
	case HSWaveahand:
		return "waveahand"
	case HSInduction:
		return "induction"
	case HSDone:
		return "done"
	case HSAgreement:
		return "agreement"
	case HSConclusion:
		return "conclusion"
	}
	if t.IsRejection() {
		return "rejection(" + t.Reason().String() + ")"
	}
	return fmt.Sprintf("unknown(%d)", uint32(t))
}

// Extension-field flags of an HSv5 conclusion.
const (
	ExtFlagHSREQ  = 0x1
	ExtFlagKMREQ  = 0x2
	ExtFlagCONFIG = 0x4
)

// Handshake extension block types.
const (
	ExtHSREQ      = 1
	ExtHSRSP      = 2
	ExtKMREQ      = 3
	ExtKMRSP      = 4
	ExtSID        = 5
	ExtCongestion = 6
	ExtFilter     = 7
	ExtGroup      = 8
)

// Handshake is a decoded handshake packet. Extensions aliases the datagram
// it was parsed from.
type Handshake struct {
	Header     Header
	Version    uint32
	Encryption uint16
	ExtField   uint16
	ISN        uint32
	MTU        uint32
	FlowWindow uint32
	Type       HandshakeType
	SocketID   uint32
	Cookie     uint32
	PeerIP     [16]byte
	// Extensions holds the raw extension blocks after the CIF.
	Extensions []byte
}

// ParseHandshake decodes a handshake control packet. It checks only that
// the packet is a handshake and is long enough for the CIF; validating the
// extension blocks is left to Extensions.
func ParseHandshake(b []byte) (Handshake, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return Handshake{}, err
	}
	if !h.Control || h.Type != CtrlHandshake {
		return Handshake{}, ErrNotHandshake
	}
	if len(b) < HandshakeLen {
		return Handshake{}, ErrShort
	}
	c := b[HeaderLen:]
	hs := Handshake{
		Header:     h,
		Version:    binary.BigEndian.Uint32(c[0:4]),
		Encryption: binary.BigEndian.Uint16(c[4:6]),
		ExtField:   binary.BigEndian.Uint16(c[6:8]),
		ISN:        binary.BigEndian.Uint32(c[8:12]),
		MTU:        binary.BigEndian.Uint32(c[12:16]),
		FlowWindow: binary.BigEndian.Uint32(c[16:20]),
		Type:       HandshakeType(binary.BigEndian.Uint32(c[20:24])),
		SocketID:   binary.BigEndian.Uint32(c[24:28]),
		Cookie:     binary.BigEndian.Uint32(c[28:32]),
		Extensions: b[HandshakeLen:],
	}
	copy(hs.PeerIP[:], c[32:48])
	return hs, nil
}

// Append encodes hs, extensions included, and appends it to dst.
func (hs *Handshake) Append(dst []byte) []byte {
	dst = hs.AppendCIF(dst)
	return append(dst, hs.Extensions...)
}

// AppendCIF encodes the header and the fixed CIF of hs, without extensions.
func (hs *Handshake) AppendCIF(dst []byte) []byte {
	h := hs.Header
	h.Control, h.Type = true, CtrlHandshake
	dst = h.Append(dst)
	dst = binary.BigEndian.AppendUint32(dst, hs.Version)
	dst = binary.BigEndian.AppendUint16(dst, hs.Encryption)
	dst = binary.BigEndian.AppendUint16(dst, hs.ExtField)
	dst = binary.BigEndian.AppendUint32(dst, hs.ISN)
	dst = binary.BigEndian.AppendUint32(dst, hs.MTU)
	dst = binary.BigEndian.AppendUint32(dst, hs.FlowWindow)
	dst = binary.BigEndian.AppendUint32(dst, uint32(hs.Type))
	dst = binary.BigEndian.AppendUint32(dst, hs.SocketID)
	dst = binary.BigEndian.AppendUint32(dst, hs.Cookie)
	return append(dst, hs.PeerIP[:]...)
}

// In-place field offsets, for rewriting a handshake without re-encoding it
// (the relay forwards conclusions byte-exact but for these fields).
const (
	offType     = HeaderLen + 20
	offSocketID = HeaderLen + 24
	offCookie   = HeaderLen + 28
	offPeerIP   = HeaderLen + 32
)

// SetCookie overwrites the SYN cookie of a handshake datagram in place.
func SetCookie(b []byte, cookie uint32) {
	if len(b) >= HandshakeLen {
		binary.BigEndian.PutUint32(b[offCookie:], cookie)
	}
}

// SetSocketID overwrites the sender's socket ID of a handshake datagram in place.
func SetSocketID(b []byte, id uint32) {
	if len(b) >= HandshakeLen {
		binary.BigEndian.PutUint32(b[offSocketID:], id)
	}
}

// SetPeerIP overwrites the peer IP field of a handshake datagram in place.
func SetPeerIP(b []byte, ip netip.Addr) {
	if len(b) >= HandshakeLen {
		p := EncodePeerIP(ip)
		copy(b[offPeerIP:], p[:])
	}
}

// HandshakeTypeOf returns the handshake type of a handshake datagram, or
// false if b is not a handshake long enough to carry one.
func HandshakeTypeOf(b []byte) (HandshakeType, bool) {
	if len(b) < HandshakeLen || !IsControl(b) || ControlTypeOf(b) != CtrlHandshake {
		return 0, false
	}
	return HandshakeType(binary.BigEndian.Uint32(b[offType:])), true
}

// EncodePeerIP encodes ip as SRT puts it in the peer IP field: the address
// bytes in 32-bit words, each word byte-reversed (so 127.0.0.1 is 01 00 00 7f).
// An IPv4 address fills the first word only.
func EncodePeerIP(ip netip.Addr) [16]byte {
	var out [16]byte
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		a := ip.As4()
		out[0], out[1], out[2], out[3] = a[3], a[2], a[1], a[0]
	case ip.Is6():
		a := ip.As16()
		for w := 0; w < 16; w += 4 {
			out[w], out[w+1], out[w+2], out[w+3] = a[w+3], a[w+2], a[w+1], a[w]
		}
	}
	return out
}

// DecodePeerIP reverses EncodePeerIP. Three zero trailing words mean IPv4.
func DecodePeerIP(p [16]byte) netip.Addr {
	var a [16]byte
	for w := 0; w < 16; w += 4 {
		a[w], a[w+1], a[w+2], a[w+3] = p[w+3], p[w+2], p[w+1], p[w]
	}
	if [12]byte(a[4:16]) == [12]byte{} {
		return netip.AddrFrom4([4]byte(a[0:4]))
	}
	return netip.AddrFrom16(a)
}

// ErrExtension reports an extension block whose length runs past the datagram.
var ErrExtension = errors.New("srt: malformed handshake extension")

// Extension is one handshake extension block; Body aliases the datagram.
type Extension struct {
	Type uint16
	Body []byte
}

// NextExtension splits the first extension block off b. It returns the
// block and the rest; at the end of b it returns ok == false and a nil
// error. A block header or body that runs past b is ErrExtension.
func NextExtension(b []byte) (ext Extension, rest []byte, ok bool, err error) {
	if len(b) == 0 {
		return Extension{}, nil, false, nil
	}
	if len(b) < 4 {
		return Extension{}, nil, false, ErrExtension
	}
	typ := binary.BigEndian.Uint16(b[0:2])
	n := int(binary.BigEndian.Uint16(b[2:4])) * 4
	if n > len(b)-4 {
		return Extension{}, nil, false, ErrExtension
	}
	return Extension{Type: typ, Body: b[4 : 4+n]}, b[4+n:], true, nil
}

// AppendExtension appends an extension block with the given body, padding
// the body with zero bytes to a multiple of four.
func AppendExtension(dst []byte, typ uint16, body []byte) []byte {
	words := (len(body) + 3) / 4
	dst = binary.BigEndian.AppendUint16(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(words))
	dst = append(dst, body...)
	for i := len(body); i < words*4; i++ {
		dst = append(dst, 0)
	}
	return dst
}

// ConclusionInfo is what a relay needs from a caller's conclusion.
type ConclusionInfo struct {
	// StreamID is the decoded stream ID, "" when the caller sent none.
	StreamID string
	// HasStreamID is true when a SID extension was present.
	HasStreamID bool
	// Encrypted is true when the caller sent a KMREQ.
	Encrypted bool
}

// MaxStreamIDLen is the longest stream ID SRT allows, in bytes.
const MaxStreamIDLen = 512

// ErrStreamIDTooLong reports a SID extension over MaxStreamIDLen bytes.
var ErrStreamIDTooLong = errors.New("srt: stream ID longer than 512 bytes")

// ParseConclusion walks the extension blocks of an HSv5 conclusion and
// extracts the stream ID. Every block must fit the datagram, an HSREQ the
// extension field announces must be there and whole, and the encryption
// field must name a key length SRT knows: listeners such as gosrt drop
// conclusions that break these rules without a word, so the relay
// refuses them itself.
func ParseConclusion(hs *Handshake) (ConclusionInfo, error) {
	var info ConclusionInfo
	if hs.Type == HSConclusion {
		switch hs.Encryption {
		case 0, 2, 3, 4: // none, AES-128, -192, -256 (key length / 8)
		default:
			return info, fmt.Errorf("%w: encryption field %d", ErrExtension, hs.Encryption)
		}
	}
	hsreq := false
	rest := hs.Extensions
	for {
		ext, r, ok, err := NextExtension(rest)
		if err != nil {
			return info, err
		}
		if !ok {
			break
		}
		rest = r
		switch ext.Type {
		case ExtHSREQ, ExtHSRSP:
			// Flag 0x1 announces an HSREQ in a request and an HSRSP in
			// its response; both carry three words at least.
			if len(ext.Body) < 12 {
				return info, fmt.Errorf("%w: HSREQ/HSRSP of %d bytes", ErrExtension, len(ext.Body))
			}
			hsreq = true
		case ExtSID:
			if info.HasStreamID {
				return info, fmt.Errorf("%w: repeated stream ID", ErrExtension)
			}
			if len(ext.Body) > MaxStreamIDLen {
				return info, ErrStreamIDTooLong
			}
			info.StreamID, info.HasStreamID = DecodeStreamID(ext.Body), true
		case ExtKMREQ:
			info.Encrypted = true
		}
	}
	if hs.Type == HSConclusion && hs.ExtField&ExtFlagHSREQ != 0 && !hsreq {
		return info, fmt.Errorf("%w: HSREQ announced but missing", ErrExtension)
	}
	return info, nil
}
