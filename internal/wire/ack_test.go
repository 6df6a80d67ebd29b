package wire

import (
	"encoding/binary"
	"testing"
)

func TestParseACK(t *testing.T) {
	full := Header{Control: true, Type: CtrlACK, Info: 7, DestSocket: 9}.Append(nil)
	for _, w := range []uint32{1000, 2500, 600, 8192, 120, 50000, 160000} {
		full = binary.BigEndian.AppendUint32(full, w)
	}
	a, ok := ParseACK(full)
	if !ok || a != (ACK{RTT: 2500, RTTVar: 600, PacketRate: 120, Capacity: 50000, ByteRate: 160000}) {
		t.Fatalf("full ACK: %+v, %v", a, ok)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"light ACK", full[:HeaderLen+4]},
		{"truncated", full[:fullACKLen-1]},
		{"not an ACK", append(Header{Control: true, Type: CtrlACKACK}.Append(nil), full[HeaderLen:]...)},
		{"data", append(Header{Seq: 5}.Append(nil), full[HeaderLen:]...)},
		{"empty", nil},
	} {
		if _, ok := ParseACK(tc.b); ok {
			t.Errorf("%s: parsed as a full ACK", tc.name)
		}
	}
}

func FuzzParseACK(f *testing.F) {
	f.Add(Header{Control: true, Type: CtrlACK}.Append(make([]byte, 0, 44)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, ok := ParseACK(b); ok && (len(b) < fullACKLen || ControlTypeOf(b) != CtrlACK) {
			t.Fatalf("accepted %x", b)
		}
	})
}
