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
	twoKeys := append([]byte(nil), km...)
	twoKeys[3] = 0x03
	twoKeys = append(twoKeys, make([]byte, 16)...)
	lyingKlen := append([]byte(nil), km...)
	lyingKlen[15] = 0xff
	noKey := append([]byte(nil), km...)
	noKey[3] = 0x00
	cases := []struct {
		name string
		p    []byte
		want error
	}{
		{"data packet", append(make([]byte, HeaderLen), 1, 2, 3), nil},
		{"keepalive", ctrl(CtrlKeepalive, 0, nil), nil},
		{"light ACK", ctrl(CtrlACK, 0, words(100)), nil},
		{"full ACK", ctrl(CtrlACK, 0, words(100, 1, 2, 3, 4, 5, 6)), nil},
		{"empty ACK", ctrl(CtrlACK, 0, nil), ErrControlShort},
		{"ACK of 8 words", ctrl(CtrlACK, 0, words(100, 1, 2, 3, 4, 5, 6, 7)), ErrControlShape},
		{"ACK odd length", ctrl(CtrlACK, 0, append(words(100), 0)), ErrControlShape},
		{"ACK seq top bit", ctrl(CtrlACK, 0, words(0x80000001)), ErrSeqRange},
		{"NAK single", ctrl(CtrlNAK, 0, words(5)), nil},
		{"NAK range", ctrl(CtrlNAK, 0, words(0x80000005, 9, 12)), nil},
		{"NAK range across wrap", ctrl(CtrlNAK, 0, words(0x80000000|seqMax, 3)), nil},
		{"NAK empty", ctrl(CtrlNAK, 0, nil), ErrControlShort},
		{"NAK open range", ctrl(CtrlNAK, 0, words(0x80000005)), ErrControlShape},
		{"NAK range end top bit", ctrl(CtrlNAK, 0, words(0x80000005, 0x80000009)), ErrSeqRange},
		{"NAK range backwards", ctrl(CtrlNAK, 0, words(0x80000009, 5)), ErrSeqRange},
		{"DROPREQ", ctrl(CtrlDropReq, 0, words(10, 20)), nil},
		{"DROPREQ short", ctrl(CtrlDropReq, 0, words(10)), ErrControlShort},
		{"DROPREQ backwards", ctrl(CtrlDropReq, 0, words(20, 10)), ErrSeqRange},
		{"DROPREQ top bit", ctrl(CtrlDropReq, 0, words(0xffffffff, 10)), ErrSeqRange},
		{"KMREQ libsrt", ctrl(CtrlUser, UserKMREQ, km), nil},
		{"KMREQ two keys", ctrl(CtrlUser, UserKMREQ, twoKeys), nil},
		{"KMRSP echo", ctrl(CtrlUser, UserKMRSP, km), nil},
		{"KMRSP status", ctrl(CtrlUser, UserKMRSP, words(3)), nil},
		{"KMREQ truncated", ctrl(CtrlUser, UserKMREQ, km[:40]), ErrKeyMaterial},
		{"KMREQ key length lies", ctrl(CtrlUser, UserKMREQ, lyingKlen), ErrKeyMaterial},
		{"KMREQ no key", ctrl(CtrlUser, UserKMREQ, noKey), ErrKeyMaterial},
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

func FuzzCheckControl(f *testing.F) {
	f.Add(ctrl(CtrlACK, 0, words(100, 1, 2, 3, 4, 5, 6)))
	f.Add(ctrl(CtrlNAK, 0, words(0x80000005, 9, 12)))
	f.Add(ctrl(CtrlDropReq, 0, words(10, 20)))
	f.Add(ctrl(CtrlUser, UserKMREQ, capKMREQ(f)))
	f.Add(ctrl(CtrlUser, UserKMRSP, words(3)))
	f.Fuzz(func(t *testing.T, p []byte) {
		err := CheckControl(p)
		if err == nil && IsControl(p) && ControlTypeOf(p) == CtrlUser && len(p) > HeaderLen+4 {
			sub := binary.BigEndian.Uint16(p[2:4])
			if (sub == UserKMREQ || sub == UserKMRSP) && CheckKeyMaterial(p[HeaderLen:]) != nil {
				t.Fatalf("accepted key material CheckKeyMaterial refuses: %x", p)
			}
		}
	})
}
