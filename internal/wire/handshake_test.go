package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// Handshakes recorded between real peers (testdata/captures).
const (
	// gosrt caller induction.
	capInduction = "80000000 00000000 0000000c 00000000 00000004 00000002 00000000 000005dc 00006400 00000001 3dd6eb55 00000000 0100007f 00000000 00000000 00000000"
	// gosrt listener's answer to it.
	capInductionResponse = "80000000 00000000 00000546 3dd6eb55 00000005 00004a17 00000000 000005dc 00006400 00000001 3dd6eb55 40da6b79 0100007f 00000000 00000000 00000000"
	// gosrt caller conclusion: HSREQ and SID "#!::r=live/cam1,m=publish".
	capConclusion = "80000000 00000000 000003d9 00000000 00000005 00000005 25081ac9 000005dc 00006400 ffffffff 3dd6eb55 40da6b79 0100007f 00000000 00000000 00000000 00010003 00010401 0000003f 00780078 00050007 3a3a2123 696c3d72 632f6576 2c316d61 75703d6d 73696c62 00000068"
	// libsrt caller conclusion with a passphrase: HSREQ, SID "hello", KMREQ.
	capConclusionKM = "80000000 00000000 00000abd 00000000 00000005 00000007 60bcb149 000005dc 00002000 ffffffff 0db89851 99ed4d1d 0100007f 00000000 00000000 00000000 00010003 00010501 000000bf 00780000 00050002 6c6c6568 0000006f 0003000e 12202901 00000000 02000200 00000404 370ceaeb 52714cbb 9dc8e04b 575353e0 0529617e 47f6dc31 72c3cf94 1d73dc1f 17278dbe 65b7dc58"
	// gosrt listener rejecting with wire 2403 (1403 forbidden); gosrt echoes
	// the caller's extensions in it.
	capRejection = "80000000 00000000 00000546 9bb751ea 00000005 00000005 7bbb5d06 000005dc 00006400 00000963 9bb751ea b63502c1 0100007f 00000000 00000000 00000000 00020003 00010401 0000003f 00780078 00050006 3a3a2123 616d3d75 726f6c6c 3d722c79 6576696c 0000782f"
)

var loopbackPeer = [16]byte{0x01, 0x00, 0x00, 0x7f}

func TestHandshakeParseAppend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wire    string
		want    Handshake // Extensions compared by length only
		extLen  int
		sid     string
		hasSID  bool
		encrypt bool
	}{
		{
			name: "caller induction",
			wire: capInduction,
			want: Handshake{
				Header:  Header{Control: true, Type: CtrlHandshake, Timestamp: 0xc},
				Version: 4, ExtField: 2, MTU: 1500, FlowWindow: 0x6400, Type: HSInduction,
				SocketID: 0x3dd6eb55, PeerIP: loopbackPeer,
			},
		},
		{
			name: "listener induction response",
			wire: capInductionResponse,
			want: Handshake{
				Header:  Header{Control: true, Type: CtrlHandshake, Timestamp: 0x546, DestSocket: 0x3dd6eb55},
				Version: 5, ExtField: Magic, MTU: 1500, FlowWindow: 0x6400, Type: HSInduction,
				SocketID: 0x3dd6eb55, Cookie: 0x40da6b79, PeerIP: loopbackPeer,
			},
		},
		{
			name: "gosrt conclusion",
			wire: capConclusion,
			want: Handshake{
				Header:  Header{Control: true, Type: CtrlHandshake, Timestamp: 0x3d9},
				Version: 5, ExtField: ExtFlagHSREQ | ExtFlagCONFIG, ISN: 0x25081ac9, MTU: 1500, FlowWindow: 0x6400,
				Type: HSConclusion, SocketID: 0x3dd6eb55, Cookie: 0x40da6b79, PeerIP: loopbackPeer,
			},
			extLen: 48, sid: "#!::r=live/cam1,m=publish", hasSID: true,
		},
		{
			name: "libsrt conclusion with KMREQ",
			wire: capConclusionKM,
			want: Handshake{
				Header:  Header{Control: true, Type: CtrlHandshake, Timestamp: 0xabd},
				Version: 5, ExtField: ExtFlagHSREQ | ExtFlagKMREQ | ExtFlagCONFIG, ISN: 0x60bcb149, MTU: 1500, FlowWindow: 0x2000,
				Type: HSConclusion, SocketID: 0x0db89851, Cookie: 0x99ed4d1d, PeerIP: loopbackPeer,
			},
			extLen: 16 + 12 + 60, sid: "hello", hasSID: true, encrypt: true,
		},
		{
			name: "gosrt rejection 2403",
			wire: capRejection,
			want: Handshake{
				Header:  Header{Control: true, Type: CtrlHandshake, Timestamp: 0x546, DestSocket: 0x9bb751ea},
				Version: 5, ExtField: 5, ISN: 0x7bbb5d06, MTU: 1500, FlowWindow: 0x6400,
				Type: 2403, SocketID: 0x9bb751ea, Cookie: 0xb63502c1, PeerIP: loopbackPeer,
			},
			extLen: 44, sid: "#!::u=mallory,r=live/x", hasSID: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := unhex(t, tc.wire)
			hs, err := ParseHandshake(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(hs.Extensions) != tc.extLen {
				t.Errorf("len(Extensions) = %d, want %d", len(hs.Extensions), tc.extLen)
			}
			got := hs
			got.Extensions = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseHandshake =\n %+v\nwant\n %+v", got, tc.want)
			}
			if out := hs.Append(nil); !bytes.Equal(out, b) {
				t.Errorf("Append = %x\nwant     %x", out, b)
			}
			if out := hs.AppendCIF(nil); !bytes.Equal(out, b[:HandshakeLen]) {
				t.Errorf("AppendCIF = %x", out)
			}
			if typ, ok := HandshakeTypeOf(b); !ok || typ != tc.want.Type {
				t.Errorf("HandshakeTypeOf = %v, %v", typ, ok)
			}
			if DecodePeerIP(hs.PeerIP) != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("peer IP = %v", DecodePeerIP(hs.PeerIP))
			}
			info, err := ParseConclusion(&hs)
			if err != nil {
				t.Fatalf("ParseConclusion: %v", err)
			}
			if info != (ConclusionInfo{StreamID: tc.sid, HasStreamID: tc.hasSID, Encrypted: tc.encrypt}) {
				t.Errorf("ParseConclusion = %+v", info)
			}
		})
	}
}

func TestHandshakeAppendForcesHandshakeHeader(t *testing.T) {
	hs := Handshake{Header: Header{Type: CtrlShutdown, Seq: 5, DestSocket: 9}, Version: 5, Type: HSConclusion}
	b := hs.Append(nil)
	if len(b) != HandshakeLen {
		t.Fatalf("len = %d", len(b))
	}
	got, err := ParseHandshake(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.DestSocket != 9 || got.Type != HSConclusion || !got.Header.Control || got.Header.Type != CtrlHandshake {
		t.Fatalf("round trip = %+v", got)
	}
}

func TestParseHandshakeErrors(t *testing.T) {
	ind := unhex(t, capInduction)
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"half a header", ind[:8], ErrShort},
		{"header only", ind[:HeaderLen], ErrShort},
		{"CIF one byte short", ind[:HandshakeLen-1], ErrShort},
		{"data packet", unhex(t, "76fe6b02 c0000001 00000a45 c9f3ea17"+strings.Repeat(" 00000000", 12)), ErrNotHandshake},
		{"keepalive", unhex(t, "80010000 00000000 000f8963 1356938a"+strings.Repeat(" 00000000", 12)), ErrNotHandshake},
		{"short keepalive", unhex(t, "80010000 00000000 000f8963 1356938a"), ErrNotHandshake},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseHandshake(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			if _, ok := HandshakeTypeOf(tc.b); ok {
				t.Fatal("HandshakeTypeOf accepted it")
			}
		})
	}
}

func TestInPlaceSetters(t *testing.T) {
	orig := unhex(t, capConclusion)
	for _, tc := range []struct {
		name   string
		set    func([]byte)
		offset int
		want   string
	}{
		{"SetCookie", func(b []byte) { SetCookie(b, 0x01020304) }, 44, "01020304"},
		{"SetSocketID", func(b []byte) { SetSocketID(b, 0xfffffffe) }, 40, "fffffffe"},
		{"SetDestSocket", func(b []byte) { SetDestSocket(b, 0x80000001) }, 12, "80000001"},
		{"SetPeerIP v4", func(b []byte) { SetPeerIP(b, netip.MustParseAddr("10.1.2.3")) }, 48, "0302010a 00000000 00000000 00000000"},
		{"SetPeerIP v4-mapped", func(b []byte) { SetPeerIP(b, netip.MustParseAddr("::ffff:10.1.2.3")) }, 48, "0302010a 00000000 00000000 00000000"},
		{"SetPeerIP v6", func(b []byte) { SetPeerIP(b, netip.MustParseAddr("2001:db8::1")) }, 48, "b80d0120 00000000 00000000 01000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), orig...)
			tc.set(b)
			want := append([]byte(nil), orig...)
			copy(want[tc.offset:], unhex(t, tc.want))
			if !bytes.Equal(b, want) {
				t.Fatalf("got  %x\nwant %x", b, want)
			}
			// Too short to hold the field: untouched, no panic.
			short := append([]byte(nil), orig[:tc.offset+2]...)
			if tc.offset >= HeaderLen {
				short = append([]byte(nil), orig[:HandshakeLen-1]...)
			}
			keep := append([]byte(nil), short...)
			tc.set(short)
			if !bytes.Equal(short, keep) {
				t.Fatalf("modified a %d-byte datagram", len(keep))
			}
		})
	}
}

func TestPeerIP(t *testing.T) {
	for _, tc := range []struct {
		ip, wire string
		back     string // what DecodePeerIP returns, when not ip itself
	}{
		{ip: "127.0.0.1", wire: "0100007f 00000000 00000000 00000000"},
		{ip: "10.20.30.40", wire: "281e140a 00000000 00000000 00000000"},
		{ip: "255.255.255.255", wire: "ffffffff 00000000 00000000 00000000"},
		{ip: "::ffff:127.0.0.1", wire: "0100007f 00000000 00000000 00000000", back: "127.0.0.1"},
		{ip: "::1", wire: "00000000 00000000 00000000 01000000"},
		{ip: "2001:db8::1", wire: "b80d0120 00000000 00000000 01000000"},
		{ip: "fe80::1:2:3:4", wire: "000080fe 00000000 02000100 04000300"},
		{ip: "2001:db8:1:2:3:4:5:6", wire: "b80d0120 02000100 04000300 06000500"},
		// The format cannot tell an IPv6 address with 96 zero low bits from
		// IPv4 (libsrt decides by the socket's family); it decodes as IPv4.
		{ip: "2001:db8::", wire: "b80d0120 00000000 00000000 00000000", back: "32.1.13.184"},
		{ip: "::", wire: "00000000 00000000 00000000 00000000", back: "0.0.0.0"},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.ip)
			got := EncodePeerIP(ip)
			if want := unhex(t, tc.wire); !bytes.Equal(got[:], want) {
				t.Fatalf("EncodePeerIP = %x, want %x", got, want)
			}
			want := ip
			if tc.back != "" {
				want = netip.MustParseAddr(tc.back)
			}
			if back := DecodePeerIP(got); back != want {
				t.Fatalf("DecodePeerIP = %v, want %v", back, want)
			}
		})
	}
	if got := EncodePeerIP(netip.Addr{}); got != [16]byte{} {
		t.Errorf("EncodePeerIP(invalid) = %x, want zeros", got)
	}
}

func TestHandshakeType(t *testing.T) {
	for _, tc := range []struct {
		typ    HandshakeType
		str    string
		reject bool
		reason RejectReason
	}{
		{HSWaveahand, "waveahand", false, 0},
		{HSInduction, "induction", false, 0},
		{HSConclusion, "conclusion", false, 0},
		{HSAgreement, "agreement", false, 0},
		{HSDone, "done", false, 0},
		{2, "unknown(2)", false, 0},
		{999, "unknown(999)", false, 0},
		{1000, "rejection(unknown)", true, RejUnknown},
		{1002, "rejection(peer)", true, RejPeer},
		{1017, "rejection(crypto)", true, 17},
		{1018, "rejection(18)", true, 18},
		{2403, "rejection(forbidden)", true, RejXForbidden},
		{2404, "rejection(not_found)", true, RejXNotFound},
		{3000, "rejection(2000)", true, 2000},
		{HSDone - 1, "rejection(4294966292)", true, MaxRejectReason},
	} {
		if got := tc.typ.String(); got != tc.str {
			t.Errorf("HandshakeType(%d).String() = %q, want %q", uint32(tc.typ), got, tc.str)
		}
		if got := tc.typ.IsRejection(); got != tc.reject {
			t.Errorf("HandshakeType(%d).IsRejection() = %v", uint32(tc.typ), got)
		}
		if got := tc.typ.Reason(); got != tc.reason {
			t.Errorf("HandshakeType(%d).Reason() = %d, want %d", uint32(tc.typ), got, tc.reason)
		}
		if tc.reject && tc.reason.HandshakeType() != tc.typ {
			t.Errorf("RejectReason(%d).HandshakeType() = %d", tc.reason, tc.reason.HandshakeType())
		}
	}
}

func TestNextExtension(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		ok      bool
		err     bool
		typ     uint16
		body    string
		restLen int
	}{
		{name: "empty", in: ""},
		{name: "1 byte", in: "00", err: true},
		{name: "3 bytes", in: "000500", err: true},
		{name: "zero-length block", in: "00050000", ok: true, typ: ExtSID},
		{name: "zero-length block then more", in: "00050000 00070000", ok: true, typ: ExtSID, restLen: 4},
		{name: "exact fit", in: "00050001 6c6c6568", ok: true, typ: ExtSID, body: "6c6c6568"},
		{name: "one word then trailing bytes", in: "00050001 6c6c6568 0000", ok: true, typ: ExtSID, body: "6c6c6568", restLen: 2},
		{name: "length one word past the end", in: "00050002 6c6c6568", err: true},
		{name: "length past the end by a byte", in: "00050002 6c6c6568 000000", err: true},
		{name: "largest length field", in: "0005ffff 6c6c6568", err: true},
		{name: "unknown type", in: "ffff0001 01020304", ok: true, typ: 0xffff, body: "01020304"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := unhex(t, tc.in)
			ext, rest, ok, err := NextExtension(in)
			if (err != nil) != tc.err || ok != tc.ok {
				t.Fatalf("ok = %v, err = %v; want ok %v, error %v", ok, err, tc.ok, tc.err)
			}
			if err != nil && !errors.Is(err, ErrExtension) {
				t.Fatalf("error %v is not ErrExtension", err)
			}
			if !ok {
				if rest != nil || ext.Body != nil {
					t.Fatalf("not ok but returned a block or rest")
				}
				return
			}
			if ext.Type != tc.typ || !bytes.Equal(ext.Body, unhex(t, tc.body)) || len(rest) != tc.restLen {
				t.Fatalf("got type %d body %x rest %d bytes", ext.Type, ext.Body, len(rest))
			}
		})
	}
}

// sidBlock is a SID extension block for id.
func sidBlock(id string) []byte { return AppendExtension(nil, ExtSID, AppendStreamID(nil, id)) }

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParseConclusion(t *testing.T) {
	hsreq := unhex(t, "00010003 00010401 0000003f 00780078")
	kmreq := AppendExtension(nil, ExtKMREQ, bytes.Repeat([]byte{0x12}, 16))
	sid512 := strings.Repeat("é", 256) // 512 bytes of UTF-8
	for _, tc := range []struct {
		name    string
		ext     []byte
		want    ConclusionInfo
		wantErr error
	}{
		{name: "no extensions (HSv4-like)", ext: nil},
		{name: "HSREQ only", ext: hsreq},
		{name: "HSREQ and SID", ext: cat(hsreq, sidBlock("live/x")), want: ConclusionInfo{StreamID: "live/x", HasStreamID: true}},
		{name: "SID before HSREQ", ext: cat(sidBlock("live/x"), hsreq), want: ConclusionInfo{StreamID: "live/x", HasStreamID: true}},
		{name: "KMREQ", ext: cat(hsreq, kmreq, sidBlock("a")), want: ConclusionInfo{StreamID: "a", HasStreamID: true, Encrypted: true}},
		{name: "empty SID block", ext: cat(hsreq, unhex(t, "00050000")), want: ConclusionInfo{HasStreamID: true}},
		{name: "zero-length blocks of every type but HSREQ/HSRSP", ext: cat(hsreq, unhex(t, "00030000 00040000 00060000 00070000 00080000")), want: ConclusionInfo{Encrypted: true}},
		// gosrt drops a conclusion whose HSREQ is short, without a word.
		{name: "zero-length HSREQ", ext: unhex(t, "00010000"), wantErr: ErrExtension},
		{name: "HSREQ of two words", ext: unhex(t, "00010002 00010401 0000003f"), wantErr: ErrExtension},
		{name: "SID of exactly 512 bytes", ext: sidBlock(sid512), want: ConclusionInfo{StreamID: sid512, HasStreamID: true}},
		{name: "SID of 513 bytes", ext: sidBlock(sid512 + "x"), wantErr: ErrStreamIDTooLong},
		{name: "SID of 512 bytes plus a NUL word", ext: AppendExtension(nil, ExtSID, append(AppendStreamID(nil, sid512), 0, 0, 0, 0)), wantErr: ErrStreamIDTooLong},
		{name: "repeated SID", ext: cat(sidBlock("a"), sidBlock("b")), wantErr: ErrExtension},
		{name: "repeated identical SID", ext: cat(sidBlock("a"), sidBlock("a")), wantErr: ErrExtension},
		{name: "SID length past the datagram", ext: cat(hsreq, unhex(t, "00050009 6c6c6568")), wantErr: ErrExtension},
		{name: "HSREQ length past the datagram", ext: unhex(t, "00010004 00010401 0000003f 00780078"), wantErr: ErrExtension},
		{name: "length field 0xffff", ext: unhex(t, "0005ffff"), wantErr: ErrExtension},
		{name: "trailing 1 byte", ext: cat(hsreq, []byte{0}), wantErr: ErrExtension},
		{name: "trailing 2 bytes", ext: cat(hsreq, []byte{0, 5}), wantErr: ErrExtension},
		{name: "trailing 3 bytes", ext: cat(sidBlock("a"), []byte{0, 5, 0}), wantErr: ErrExtension},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := Handshake{Type: HSConclusion, Version: 5, Extensions: tc.ext}
			info, err := ParseConclusion(&hs)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info != tc.want {
				t.Fatalf("ParseConclusion = %+v, want %+v", info, tc.want)
			}
		})
	}
}

func TestParseConclusionOfWholeDatagram(t *testing.T) {
	// A datagram whose extension region holds a SID block whose length
	// claims more than the datagram: the claim is bounded by the real size.
	b := unhex(t, capConclusion)
	b[HandshakeLen+16+3] = 0xff // SID block length: 255 words
	hs, err := ParseHandshake(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseConclusion(&hs); !errors.Is(err, ErrExtension) {
		t.Fatalf("error = %v, want ErrExtension", err)
	}
}

func TestAppendExtension(t *testing.T) {
	for _, tc := range []struct {
		body, want string
	}{
		{"", "00050000"},
		{"01", "00050001 01000000"},
		{"010203", "00050001 01020300"},
		{"01020304", "00050001 01020304"},
		{"0102030405", "00050002 01020304 05000000"},
	} {
		if got := AppendExtension(nil, ExtSID, unhex(t, tc.body)); !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("AppendExtension(%s) = %x, want %s", tc.body, got, tc.want)
		}
	}
}
