package wire

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// capKMREQ is the KMREQ extension body of capConclusionKM (libsrt 1.5.1,
// AES-128 CTR, even key): the shape a KMREQ control packet carries.
func capKMREQ(t testing.TB) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(capConclusionKM, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	// The KMREQ extension: type 3, 14 words, after HSREQ and SID.
	i := strings.Index(hex.EncodeToString(b), "0003000e")
	if i < 0 {
		t.Fatal("no KMREQ in capture")
	}
	return b[i/2+4 : i/2+4+56]
}

// ctrl builds a control packet of type typ (and subtype) with body.
func ctrl(typ ControlType, subtype uint16, body []byte) []byte {
	p := Header{Control: true, Type: typ, DestSocket: 7}.Append(nil)
	binary.BigEndian.PutUint16(p[2:4], subtype)
	return append(p, body...)
}

func words(ws ...uint32) []byte {
	var b []byte
	for _, w := range ws {
		b = binary.BigEndian.AppendUint32(b, w)
	}
	return b
}

func TestCheckControl(t *testing.T) {
	km := capKMREQ(t)
	edit := func(i int, v byte, extra int) []byte {
		b := append([]byte(nil), km...)
		b[i] = v
		return append(b, make([]byte, extra)...)
	}
	gcm := edit(8, kmCipherGCM, 0)
	gcm[9] = kmAuthGCM
	cases := []struct {
		name string
		p    []byte
		want error
	}{
		{"data packet", append(make([]byte, HeaderLen), 1, 2, 3), nil},
		{"keepalive", ctrl(CtrlKeepalive, 0, nil), nil},
		{"handshake", ctrl(CtrlHandshake, 0, []byte{1}), nil},

		// ACK: light (1 word), small (4), UDT base (6), current (7),
		// the 8 words libsrt sends a 1.0.2 peer; libsrt ignores longer
		// tails.
		{"light ACK", ctrl(CtrlACK, 0, words(100)), nil},
		{"small ACK", ctrl(CtrlACK, 0, words(100, 1, 2, 3)), nil},
		{"UDT ACK", ctrl(CtrlACK, 0, words(100, 1, 2, 3, 4, 5)), nil},
		{"full ACK", ctrl(CtrlACK, 0, words(100, 1, 2, 3, 4, 5, 6)), nil},
		{"1.0.2 ACK", ctrl(CtrlACK, 0, words(100, 1, 2, 3, 4, 5, 6, 7)), nil},
		{"ACK of 10 words", ctrl(CtrlACK, 0, words(100, 1, 2, 3, 4, 5, 6, 7, 8, 9)), nil},
		{"ACK odd tail", ctrl(CtrlACK, 0, append(words(100, 1, 2, 3), 0)), ErrControlShape},
		{"ACK seq max", ctrl(CtrlACK, 0, words(seqMax)), nil},
		{"empty ACK", ctrl(CtrlACK, 0, nil), ErrControlShort},
		{"ACK of 3 bytes", ctrl(CtrlACK, 0, []byte{0, 0, 1}), ErrControlShort},
		{"ACK of 5 bytes", ctrl(CtrlACK, 0, append(words(100), 0)), ErrControlShort},
		{"ACK of 2 words", ctrl(CtrlACK, 0, words(100, 1)), ErrControlShort},
		{"ACK of 3 words", ctrl(CtrlACK, 0, words(100, 1, 2)), ErrControlShort},
		{"ACK seq top bit", ctrl(CtrlACK, 0, words(0x80000001)), ErrSeqRange},
		{"full ACK seq top bit", ctrl(CtrlACK, 0, words(0xffffffff, 1, 2, 3, 4, 5, 6)), ErrSeqRange},

		// NAK loss lists, compared as libsrt's CSeqNo::seqcmp does.
		{"NAK single", ctrl(CtrlNAK, 0, words(5)), nil},
		{"NAK range", ctrl(CtrlNAK, 0, words(0x80000005, 9, 12)), nil},
		{"NAK range of one", ctrl(CtrlNAK, 0, words(0x80000005, 5)), nil},
		{"NAK range across wrap", ctrl(CtrlNAK, 0, words(0x80000000|seqMax, 3)), nil},
		{"NAK widest forward range", ctrl(CtrlNAK, 0, words(0x80000000, seqTH-1)), nil},
		{"NAK range too wide", ctrl(CtrlNAK, 0, words(0x80000000, seqTH)), ErrSeqRange},
		{"NAK odd tail", ctrl(CtrlNAK, 0, append(words(5), 0x80)), ErrControlShape},
		{"NAK empty", ctrl(CtrlNAK, 0, nil), ErrControlShort},
		{"NAK under a word", ctrl(CtrlNAK, 0, []byte{0, 0, 5}), ErrControlShort},
		{"NAK open range", ctrl(CtrlNAK, 0, words(0x80000005)), ErrControlShape},
		{"NAK open range after a single", ctrl(CtrlNAK, 0, words(3, 0x80000005)), ErrControlShape},
		{"NAK open range, odd tail", ctrl(CtrlNAK, 0, append(words(0x80000005), 0, 0, 9)), ErrControlShape},
		{"NAK range end top bit", ctrl(CtrlNAK, 0, words(0x80000005, 0x80000009)), ErrSeqRange},
		{"NAK range backwards", ctrl(CtrlNAK, 0, words(0x80000009, 5)), ErrSeqRange},
		{"NAK range backwards across wrap", ctrl(CtrlNAK, 0, words(0x80000003, seqMax)), ErrSeqRange},
		{"NAK second range backwards", ctrl(CtrlNAK, 0, words(0x80000001, 2, 0x80000009, 5)), ErrSeqRange},

		// DROPREQ: two words, a forward range; extra words ignored.
		{"DROPREQ", ctrl(CtrlDropReq, 0, words(10, 20)), nil},
		{"DROPREQ one packet", ctrl(CtrlDropReq, 0, words(10, 10)), nil},
		{"DROPREQ across wrap", ctrl(CtrlDropReq, 0, words(seqMax-1, 2)), nil},
		{"DROPREQ long", ctrl(CtrlDropReq, 0, words(10, 20, 30)), nil},
		{"DROPREQ empty", ctrl(CtrlDropReq, 0, nil), ErrControlShort},
		{"DROPREQ short", ctrl(CtrlDropReq, 0, words(10)), ErrControlShort},
		{"DROPREQ 7 bytes", ctrl(CtrlDropReq, 0, words(10, 20)[:7]), ErrControlShort},
		{"DROPREQ 9 bytes", ctrl(CtrlDropReq, 0, append(words(10, 20), 0)), ErrControlShape},
		{"DROPREQ backwards", ctrl(CtrlDropReq, 0, words(20, 10)), ErrSeqRange},
		{"DROPREQ top bit", ctrl(CtrlDropReq, 0, words(0xffffffff, 10)), ErrSeqRange},
		{"DROPREQ last top bit", ctrl(CtrlDropReq, 0, words(10, 0x80000014)), ErrSeqRange},

		// HSv4 handshake extensions in a control packet.
		{"HSREQ", ctrl(CtrlUser, UserHSREQ, words(0x010203, 0x3f, 0x0078)), nil},
		{"HSRSP of 2 words", ctrl(CtrlUser, UserHSRSP, words(0x010203, 0x3f)), nil},
		{"HSREQ short", ctrl(CtrlUser, UserHSREQ, words(0x010203)), ErrControlShort},
		{"HSRSP empty", ctrl(CtrlUser, UserHSRSP, nil), ErrControlShort},

		// Key material.
		{"KMREQ libsrt", ctrl(CtrlUser, UserKMREQ, km), nil},
		{"KMREQ two keys", ctrl(CtrlUser, UserKMREQ, edit(3, 0x03, 16)), nil},
		{"KMREQ odd key", ctrl(CtrlUser, UserKMREQ, edit(3, 0x02, 0)), nil},
		{"KMREQ AES-GCM", ctrl(CtrlUser, UserKMREQ, gcm), nil},
		{"KMREQ KEKI ignored", ctrl(CtrlUser, UserKMREQ, edit(7, 1, 0)), nil},
		{"KMREQ reserved bits ignored", ctrl(CtrlUser, UserKMREQ, edit(3, 0xf1, 0)), nil},
		{"KMRSP echo", ctrl(CtrlUser, UserKMRSP, km), nil},
		{"KMRSP status bad secret", ctrl(CtrlUser, UserKMRSP, words(4)), nil},
		{"KMRSP status bad crypto mode", ctrl(CtrlUser, UserKMRSP, words(5)), nil},
		{"KMRSP status unknown", ctrl(CtrlUser, UserKMRSP, words(6)), ErrKeyMaterial},
		{"KMRSP empty", ctrl(CtrlUser, UserKMRSP, nil), ErrKeyMaterial},
		{"KMRSP of 2 words", ctrl(CtrlUser, UserKMRSP, words(4, 4)), ErrKeyMaterial},
		{"KMRSP oversized", ctrl(CtrlUser, UserKMRSP, append(append([]byte(nil), km...), make([]byte, 64)...)), ErrKeyMaterial},
		{"KMREQ header only", ctrl(CtrlUser, UserKMREQ, km[:16]), ErrKeyMaterial},
		{"KMREQ truncated", ctrl(CtrlUser, UserKMREQ, km[:40]), ErrKeyMaterial},
		{"KMREQ key length lies", ctrl(CtrlUser, UserKMREQ, edit(15, 0xff, 0)), ErrKeyMaterial},
		{"KMREQ key length 8", ctrl(CtrlUser, UserKMREQ, edit(15, 2, 0)), ErrKeyMaterial},
		{"KMREQ salt too long", ctrl(CtrlUser, UserKMREQ, edit(14, 5, 4)), ErrKeyMaterial},
		{"KMREQ no key", ctrl(CtrlUser, UserKMREQ, edit(3, 0x00, 0)), ErrKeyMaterial},
		{"KMREQ two keys, one sent", ctrl(CtrlUser, UserKMREQ, edit(3, 0x03, 0)), ErrKeyMaterial},
		{"KMREQ version 2", ctrl(CtrlUser, UserKMREQ, edit(0, 0x22, 0)), ErrKeyMaterial},
		{"KMREQ data packet type", ctrl(CtrlUser, UserKMREQ, edit(0, 0x11, 0)), ErrKeyMaterial},
		{"KMREQ signature", ctrl(CtrlUser, UserKMREQ, edit(2, 0x28, 0)), ErrKeyMaterial},
		{"KMREQ encapsulation UDP", ctrl(CtrlUser, UserKMREQ, edit(10, 1, 0)), ErrKeyMaterial},
		{"KMREQ no cipher", ctrl(CtrlUser, UserKMREQ, edit(8, 0, 0)), ErrKeyMaterial},
		{"KMREQ AES-CBC", ctrl(CtrlUser, UserKMREQ, edit(8, 3, 0)), ErrKeyMaterial},
		{"KMREQ CTR with GCM auth", ctrl(CtrlUser, UserKMREQ, edit(9, kmAuthGCM, 0)), ErrKeyMaterial},
		{"KMREQ GCM without auth", ctrl(CtrlUser, UserKMREQ, edit(8, kmCipherGCM, 0)), ErrKeyMaterial},
		{"KMREQ padded", ctrl(CtrlUser, UserKMREQ, append(append([]byte(nil), km...), 0, 0, 0, 0)), ErrKeyMaterial},
		{"KMREQ empty", ctrl(CtrlUser, UserKMREQ, nil), ErrKeyMaterial},
		{"other user subtype", ctrl(CtrlUser, 9, []byte{1}), nil},
	}
	for _, c := range cases {
		if err := CheckControl(c.p); !errors.Is(err, c.want) {
			t.Errorf("%s: CheckControl = %v, want %v", c.name, err, c.want)
		}
	}
}

// seqcmp must agree with libsrt's CSeqNo::seqcmp, computed here on int32
// as libsrt does.
func TestSeqcmp(t *testing.T) {
	libsrt := func(a, b int32) int32 {
		d := a - b
		if d < 0 {
			d = -d
		}
		if d < seqTH {
			return a - b
		}
		return b - a
	}
	vals := []uint32{0, 1, 2, 100, seqTH - 1, seqTH, seqTH + 1, 1 << 30, seqMax - seqTH, seqMax - 1, seqMax}
	for _, a := range vals {
		for _, b := range vals {
			got, want := seqcmp(a, b), libsrt(int32(a), int32(b))
			if (got > 0) != (want > 0) || (got < 0) != (want < 0) {
				t.Errorf("seqcmp(%d, %d) = %d, libsrt gives %d", a, b, got, want)
			}
		}
	}
}

func FuzzCheckControl(f *testing.F) {
	km := capKMREQ(f)
	f.Add(ctrl(CtrlACK, 0, words(100)))
	f.Add(ctrl(CtrlACK, 0, words(100, 1, 2, 3, 4, 5, 6)))
	f.Add(ctrl(CtrlNAK, 0, words(0x80000005, 9, 12)))
	f.Add(ctrl(CtrlNAK, 0, words(0x80000000|seqMax, 3)))
	f.Add(ctrl(CtrlDropReq, 0, words(10, 20)))
	f.Add(ctrl(CtrlUser, UserHSREQ, words(0x010203, 0x3f, 0x0078)))
	f.Add(ctrl(CtrlUser, UserKMREQ, km))
	f.Add(ctrl(CtrlUser, UserKMRSP, km))
	f.Add(ctrl(CtrlUser, UserKMRSP, words(3)))
	f.Fuzz(func(t *testing.T, p []byte) {
		err := CheckControl(p)
		if err != nil || !IsControl(p) {
			return
		}
		body := p[HeaderLen:]
		switch ControlTypeOf(p) {
		case CtrlACK:
			if len(body) != ackLite && len(body) < ackSmall || len(body)%4 != 0 {
				t.Fatalf("accepted an ACK of %d bytes", len(body))
			}
		case CtrlDropReq:
			if len(body) < 8 {
				t.Fatalf("accepted a DROPREQ of %d bytes", len(body))
			}
		case CtrlNAK:
			n := len(body)
			if n%4 != 0 {
				t.Fatalf("accepted a NAK of %d bytes", n)
			}
			for i := 0; i < n; i += 4 {
				if body[i]&0x80 != 0 {
					if i += 4; i >= n || body[i]&0x80 != 0 {
						t.Fatalf("accepted a NAK with an open range: %x", body)
					}
				}
			}
		case CtrlUser:
			sub := binary.BigEndian.Uint16(p[2:4])
			if (sub == UserKMREQ || sub == UserKMRSP && len(body) != 4) && CheckKeyMaterial(body) != nil {
				t.Fatalf("accepted key material CheckKeyMaterial refuses: %x", p)
			}
			if (sub == UserKMREQ || sub == UserKMRSP) && (len(body)%4 != 0 || len(body) > 104) {
				t.Fatalf("accepted key material of %d bytes", len(body))
			}
		}
	})
}
