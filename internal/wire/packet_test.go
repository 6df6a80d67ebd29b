package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/srtroute/caddy-l4-srt/internal/wire/wiretest"
)

// unhex decodes hex that may be grouped with spaces.
var unhex = wiretest.Unhex

func TestHeaderParseAppend(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire string
		want Header
	}{
		{
			name: "data packet",
			wire: "76fe6b02 c0000001 00000a45 c9f3ea17",
			want: Header{Seq: 0x76fe6b02, Info: 0xc0000001, Timestamp: 0xa45, DestSocket: 0xc9f3ea17},
		},
		{
			name: "data packet, largest sequence number",
			wire: "7fffffff 00000000 ffffffff ffffffff",
			want: Header{Seq: 0x7fffffff, Timestamp: 0xffffffff, DestSocket: 0xffffffff},
		},
		{
			name: "caller induction header",
			wire: "80000000 00000000 00000014 00000000",
			want: Header{Control: true, Type: CtrlHandshake, Timestamp: 0x14},
		},
		{
			name: "keepalive",
			wire: "80010000 00000000 000f8963 1356938a",
			want: Header{Control: true, Type: CtrlKeepalive, Timestamp: 0xf8963, DestSocket: 0x1356938a},
		},
		{
			name: "full ACK with ACK number",
			wire: "80020000 00000001 00003182 2e6d7dd3",
			want: Header{Control: true, Type: CtrlACK, Info: 1, Timestamp: 0x3182, DestSocket: 0x2e6d7dd3},
		},
		{
			name: "shutdown",
			wire: "80050000 00000000 0016f174 c9f3ea17",
			want: Header{Control: true, Type: CtrlShutdown, Timestamp: 0x16f174, DestSocket: 0xc9f3ea17},
		},
		{
			name: "user-defined with subtype (HSv4 KMREQ)",
			wire: "ffff0003 00000000 00000001 80000000",
			want: Header{Control: true, Type: CtrlUser, Subtype: 3, Timestamp: 1, DestSocket: 0x80000000},
		},
		{
			name: "unknown control type",
			wire: "80420007 deadbeef 00000000 00000001",
			want: Header{Control: true, Type: 0x42, Subtype: 7, Info: 0xdeadbeef, DestSocket: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := unhex(t, tc.wire)
			got, err := ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("ParseHeader = %+v, want %+v", got, tc.want)
			}
			if out := tc.want.Append(nil); !bytes.Equal(out, b) {
				t.Fatalf("Append = %x, want %x", out, b)
			}
			// Append appends: existing bytes stay.
			if out := tc.want.Append([]byte{0xAA}); len(out) != 1+HeaderLen || out[0] != 0xAA || !bytes.Equal(out[1:], b) {
				t.Fatalf("Append to a non-empty slice = %x", out)
			}
			// The single-field helpers agree with the full decoder, and
			// ignore bytes after the header.
			long := append(append([]byte(nil), b...), 1, 2, 3)
			if IsControl(long) != tc.want.Control {
				t.Errorf("IsControl = %v", IsControl(long))
			}
			if tc.want.Control && ControlTypeOf(long) != tc.want.Type {
				t.Errorf("ControlTypeOf = %v, want %v", ControlTypeOf(long), tc.want.Type)
			}
			if DestSocketOf(long) != tc.want.DestSocket {
				t.Errorf("DestSocketOf = %#x", DestSocketOf(long))
			}
			if IsShutdown(long) != (tc.want.Control && tc.want.Type == CtrlShutdown) {
				t.Errorf("IsShutdown = %v", IsShutdown(long))
			}
		})
	}
}

func TestHeaderAppendMasksOutOfRangeFields(t *testing.T) {
	// A data header's top bit and a control type's top bit belong to the
	// control flag; Append must not let them leak into it.
	if got := (Header{Seq: 0xffffffff}).Append(nil); got[0]&0x80 != 0 {
		t.Errorf("data header with Seq 0xffffffff encodes as control: %x", got)
	}
	h, _ := ParseHeader((Header{Control: true, Type: 0xffff, Subtype: 1}).Append(nil))
	if !h.Control || h.Type != 0x7fff || h.Subtype != 1 {
		t.Errorf("control type 0xffff round trip = %+v", h)
	}
}

func TestHeaderShort(t *testing.T) {
	for n := 0; n < HeaderLen; n++ {
		b := bytes.Repeat([]byte{0xff}, n)
		if _, err := ParseHeader(b); !errors.Is(err, ErrShort) {
			t.Errorf("ParseHeader(%d bytes) error = %v, want ErrShort", n, err)
		}
		if IsControl(b) || ControlTypeOf(b) != 0 || DestSocketOf(b) != 0 || IsShutdown(b) {
			t.Errorf("field helpers on %d bytes must return zero values", n)
		}
		c := append([]byte(nil), b...)
		SetDestSocket(c, 1)
		if !bytes.Equal(c, b) {
			t.Errorf("SetDestSocket modified a %d-byte datagram", n)
		}
	}
}

func TestSetDestSocket(t *testing.T) {
	b := unhex(t, "80020000 00000001 00003182 2e6d7dd3 0d01009a")
	SetDestSocket(b, 0xfedcba98)
	if want := unhex(t, "80020000 00000001 00003182 fedcba98 0d01009a"); !bytes.Equal(b, want) {
		t.Fatalf("SetDestSocket = %x, want %x", b, want)
	}
	if DestSocketOf(b) != 0xfedcba98 {
		t.Fatalf("DestSocketOf = %#x", DestSocketOf(b))
	}
}

func TestAppendShutdown(t *testing.T) {
	got := AppendShutdown(nil, 0xc9f3ea17, 0x16f174)
	// As libsrt and gosrt send it (see testdata/captures/gosrt-plain.txt).
	want := unhex(t, "80050000 00000000 0016f174 c9f3ea17 00000000")
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendShutdown = %x, want %x", got, want)
	}
	if !IsShutdown(got) {
		t.Fatal("IsShutdown(AppendShutdown) = false")
	}
}

func TestControlTypeString(t *testing.T) {
	for typ, want := range map[ControlType]string{
		CtrlHandshake: "handshake", CtrlKeepalive: "keepalive", CtrlACK: "ack", CtrlNAK: "nak",
		CtrlCongestion: "congestion", CtrlShutdown: "shutdown", CtrlACKACK: "ackack",
		CtrlDropReq: "dropreq", CtrlPeerError: "peererror", CtrlUser: "user", 0x42: "unknown",
	} {
		if got := typ.String(); got != want {
			t.Errorf("ControlType(%#x).String() = %q, want %q", uint16(typ), got, want)
		}
	}
}
