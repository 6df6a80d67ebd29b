package handshake

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Real datagrams (../wire/testdata/captures/gosrt-plain.txt).
const (
	gosrtInduction  = "80000000 00000000 0000000c 00000000 00000004 00000002 00000000 000005dc 00006400 00000001 3dd6eb55 00000000 0100007f 00000000 00000000 00000000"
	gosrtConclusion = "80000000 00000000 000003d9 00000000 00000005 00000005 25081ac9 000005dc 00006400 ffffffff 3dd6eb55 40da6b79 0100007f 00000000 00000000 00000000 00010003 00010401 0000003f 00780078 00050007 3a3a2123 696c3d72 632f6576 2c316d61 75703d6d 73696c62 00000068"
	gosrtCallerID   = 0x3dd6eb55
)

// withCookie returns a copy of a handshake datagram carrying c.
func withCookie(b []byte, c uint32) []byte {
	b = clone(b)
	wire.SetCookie(b, c)
	return b
}

// mutate returns a copy of b with the 32-bit word at off set to v.
func mutate(b []byte, off int, v uint32) []byte {
	b = clone(b)
	binary.BigEndian.PutUint32(b[off:], v)
	return b
}

func TestGateInduction(t *testing.T) {
	jar := testJar()
	g := &Gate{Jar: jar}
	ind := unhex(t, gosrtInduction)
	for _, tc := range []struct {
		name string
		req  []byte
	}{
		{"gosrt induction", ind},
		{"HSv5 induction", mutate(ind, 16, 5)},
		{"induction with trailing bytes", append(clone(ind), 0, 5, 0, 1, 1, 2, 3, 4)},
		{"induction with a cookie already", withCookie(ind, 0x12345678)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(17 * time.Second)
			d := g.Inspect(callerAddr, tc.req, now, nil)
			if d.Verdict != Reply {
				t.Fatalf("verdict %v (%s), want reply", d.Verdict, d.Why)
			}
			if len(d.Reply) != wire.HandshakeLen || len(d.Reply) > len(tc.req) {
				t.Fatalf("reply is %d bytes for a %d-byte request", len(d.Reply), len(tc.req))
			}
			resp := mustParse(t, d.Reply)
			req := mustParse(t, tc.req)
			if resp.Header.DestSocket != gosrtCallerID || resp.SocketID != gosrtCallerID {
				t.Errorf("dest %#x, socket ID %#x; want both the caller's %#x", resp.Header.DestSocket, resp.SocketID, gosrtCallerID)
			}
			if resp.Version != 5 || resp.ExtField != wire.Magic || resp.Type != wire.HSInduction {
				t.Errorf("version %d, extension field %#x, type %v", resp.Version, resp.ExtField, resp.Type)
			}
			if resp.Cookie != jar.Issue(callerAddr, now) || resp.Cookie == 0 {
				t.Errorf("cookie %#x, want the jar's %#x", resp.Cookie, jar.Issue(callerAddr, now))
			}
			if resp.ISN != req.ISN || resp.MTU != req.MTU || resp.FlowWindow != req.FlowWindow || resp.PeerIP != req.PeerIP {
				t.Errorf("response does not echo the request: %+v", resp)
			}
			if resp.Header.Timestamp != Timestamp(now) {
				t.Errorf("timestamp %d, want %d", resp.Header.Timestamp, Timestamp(now))
			}
		})
	}
}

func TestGateReplyAppendsToDst(t *testing.T) {
	g := &Gate{Jar: testJar()}
	dst := make([]byte, 3, 128)
	d := g.Inspect(callerAddr, unhex(t, gosrtInduction), t0, dst)
	if d.Verdict != Reply || len(d.Reply) != 3+wire.HandshakeLen || &d.Reply[0] != &dst[0] {
		t.Fatalf("reply not appended to dst: %d bytes", len(d.Reply))
	}
}

func TestGateConclusion(t *testing.T) {
	jar := testJar()
	g := &Gate{Jar: jar}
	conc := unhex(t, gosrtConclusion)
	good := jar.Issue(callerAddr, t0)
	hsv4 := mutate(withCookie(conc[:wire.HandshakeLen], good), 16, 4)
	for _, tc := range []struct {
		name    string
		from    netip.AddrPort
		b       []byte
		at      time.Duration
		verdict Verdict
		sid     string
		hasSID  bool
		// For Reply: the expected handshake type, or 0 for a SHUTDOWN.
		replyType wire.HandshakeType
	}{
		{name: "valid cookie", from: callerAddr, b: withCookie(conc, good), verdict: Conclude, sid: "#!::r=live/cam1,m=publish", hasSID: true},
		{name: "cookie from the previous bucket", from: callerAddr, b: withCookie(conc, good), at: time.Minute + 59*time.Second, verdict: Conclude, sid: "#!::r=live/cam1,m=publish", hasSID: true},
		{name: "cookie two buckets old", from: callerAddr, b: withCookie(conc, good), at: 2 * time.Minute, verdict: Drop},
		{name: "cookie the real listener issued", from: callerAddr, b: conc, verdict: Drop},
		{name: "no cookie", from: callerAddr, b: withCookie(conc, 0), verdict: Drop},
		{name: "cookie issued to another port", from: otherAddr, b: withCookie(conc, good), verdict: Drop},
		{name: "cookie issued to another address", from: netip.MustParseAddrPort("10.0.0.1:40000"), b: withCookie(conc, good), verdict: Drop},
		{name: "HSv4 conclusion", from: callerAddr, b: hsv4, verdict: Conclude},
		{name: "HSv4 conclusion without a valid cookie", from: callerAddr, b: withCookie(hsv4, good+1), verdict: Drop},
		// Its extension field still announces the HSREQ it lost; listeners
		// drop such a conclusion silently, so the relay refuses it itself.
		{name: "HSv5 conclusion cut before its extensions", from: callerAddr, b: withCookie(conc[:wire.HandshakeLen], good),
			verdict: Reply, replyType: wire.RejXBadRequest.HandshakeType()},
		{
			name: "extension length past the datagram", from: callerAddr,
			b:       withCookie(mutate(conc, wire.HandshakeLen+16, wire.ExtSID<<16|0xff), good),
			verdict: Reply, replyType: wire.RejXBadRequest.HandshakeType(),
		},
		{
			name: "trailing bytes after the extensions", from: callerAddr,
			b:       append(withCookie(conc, good), 0, 0),
			verdict: Reply, replyType: wire.RejXBadRequest.HandshakeType(),
		},
		{
			name: "stream ID over 512 bytes", from: callerAddr,
			b: withCookie(wire.AppendExtension(clone(conc[:wire.HandshakeLen]), wire.ExtSID,
				wire.AppendStreamID(nil, strings.Repeat("x", 513))), good),
			verdict: Reply, replyType: wire.RejXBadRequest.HandshakeType(),
		},
		{
			name: "unknown version 6", from: callerAddr, b: mutate(withCookie(conc, good), 16, 6),
			verdict: Reply, replyType: wire.RejVersion.HandshakeType(),
		},
		{name: "version 3 gets a SHUTDOWN", from: callerAddr, b: mutate(withCookie(conc, good), 16, 3), verdict: Reply},
		{name: "invalid cookie and unknown version", from: callerAddr, b: mutate(conc, 16, 6), verdict: Drop},
		{name: "addressed to a socket", from: callerAddr, b: mutate(withCookie(conc, good), 12, gosrtCallerID), verdict: Drop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := clone(tc.b)
			now := t0.Add(tc.at)
			d := g.Inspect(tc.from, tc.b, now, nil)
			if !bytes.Equal(in, tc.b) {
				t.Fatal("Inspect modified the datagram")
			}
			if d.Verdict != tc.verdict {
				t.Fatalf("verdict %v (%s), want %v", d.Verdict, d.Why, tc.verdict)
			}
			if d.Why == "" {
				t.Error("no reason given")
			}
			if len(d.Reply) > len(tc.b) {
				t.Fatalf("reply of %d bytes to a %d-byte datagram", len(d.Reply), len(tc.b))
			}
			switch d.Verdict {
			case Drop:
				if d.Reply != nil {
					t.Fatal("reply on drop")
				}
			case Conclude:
				if d.Reply != nil {
					t.Fatal("reply on conclude")
				}
				if d.Handshake.SocketID != gosrtCallerID || d.Handshake.Type != wire.HSConclusion {
					t.Errorf("handshake %+v", d.Handshake)
				}
				if d.Conclusion.StreamID != tc.sid || d.Conclusion.HasStreamID != tc.hasSID {
					t.Errorf("conclusion %+v", d.Conclusion)
				}
			case Reply:
				if tc.replyType == 0 {
					if !wire.IsShutdown(d.Reply) || wire.DestSocketOf(d.Reply) != gosrtCallerID {
						t.Fatalf("reply %x, want a SHUTDOWN to the caller", d.Reply)
					}
					return
				}
				rej := mustParse(t, d.Reply)
				if len(d.Reply) != wire.HandshakeLen || rej.Type != tc.replyType || rej.Header.DestSocket != gosrtCallerID {
					t.Fatalf("reply: %d bytes, type %v, dest %#x", len(d.Reply), rej.Type, rej.Header.DestSocket)
				}
			}
		})
	}
}

func TestGateOtherDatagrams(t *testing.T) {
	g := &Gate{Jar: testJar()}
	ind := unhex(t, gosrtInduction)
	conc := unhex(t, gosrtConclusion)
	for _, tc := range []struct {
		name      string
		b         []byte
		verdict   Verdict
		replyType wire.HandshakeType // 0: SHUTDOWN
	}{
		{name: "empty", b: nil},
		{name: "truncated header", b: ind[:10]},
		{name: "header only", b: ind[:wire.HeaderLen]},
		{name: "induction one byte short", b: ind[:wire.HandshakeLen-1]},
		{name: "conclusion cut inside the CIF", b: conc[:40]},
		{name: "data packet", b: unhex(t, "76fe6b02 c0000001 00000a45 00000000 63617074 7572652d")},
		{name: "keepalive", b: unhex(t, "80010000 00000000 000f8963 00000000 00000000")},
		{name: "shutdown", b: wire.AppendShutdown(nil, 0, 0)},
		{name: "induction of version 3", b: mutate(ind, 16, 3)},
		{name: "induction addressed to a socket", b: mutate(ind, 12, 1)},
		{name: "agreement", b: mutate(ind, 36, uint32(wire.HSAgreement))},
		{name: "done", b: mutate(ind, 36, uint32(wire.HSDone))},
		{name: "a rejection", b: mutate(ind, 36, 2403)},
		{name: "unknown type 2", b: mutate(ind, 36, 2)},
		{name: "HSv5 waveahand", b: mutate(mutate(ind, 16, 5), 36, 0), verdict: Reply, replyType: wire.RejXUnimplemented.HandshakeType()},
		{name: "HSv4 waveahand gets a SHUTDOWN", b: mutate(ind, 36, 0), verdict: Reply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := g.Inspect(callerAddr, tc.b, t0, nil)
			if d.Verdict != tc.verdict {
				t.Fatalf("verdict %v (%s), want %v", d.Verdict, d.Why, tc.verdict)
			}
			if len(d.Reply) > len(tc.b) {
				t.Fatalf("reply of %d bytes to a %d-byte datagram", len(d.Reply), len(tc.b))
			}
			if tc.verdict == Drop {
				if d.Reply != nil {
					t.Fatal("reply on drop")
				}
				return
			}
			if tc.replyType == 0 {
				if !wire.IsShutdown(d.Reply) || wire.DestSocketOf(d.Reply) != gosrtCallerID {
					t.Fatalf("reply %x, want a SHUTDOWN to the caller", d.Reply)
				}
				return
			}
			rej := mustParse(t, d.Reply)
			if rej.Type != tc.replyType || rej.Header.DestSocket != gosrtCallerID || len(d.Reply) != wire.HandshakeLen {
				t.Fatalf("reply type %v to %#x", rej.Type, rej.Header.DestSocket)
			}
		})
	}
}

// TestGateCapturedCallers plays every captured caller's first induction
// and conclusion through the Gate, the conclusion carrying the cookie the
// Gate issued (as the caller would have echoed it).
func TestGateCapturedCallers(t *testing.T) {
	for _, x := range loadExchanges(t) {
		t.Run(x.name, func(t *testing.T) {
			g := &Gate{Jar: testJar()}
			now := t0.Add(42 * time.Second)
			d := g.Inspect(callerAddr, x.induction, now, nil)
			if d.Verdict != Reply || len(d.Reply) > len(x.induction) {
				t.Fatalf("induction: %v (%s), %d bytes", d.Verdict, d.Why, len(d.Reply))
			}
			// Our answer has the shape of the real listener's.
			ours, theirs := mustParse(t, d.Reply), mustParse(t, x.inductionResponse)
			if len(d.Reply) != len(x.inductionResponse) || ours.Header.DestSocket != theirs.Header.DestSocket ||
				ours.SocketID != theirs.SocketID || ours.Version != theirs.Version || ours.ExtField != theirs.ExtField || ours.Type != theirs.Type {
				t.Errorf("induction response\n ours   %+v\n theirs %+v", ours, theirs)
			}
			// The real listener's cookie is not ours.
			if d := g.Inspect(callerAddr, x.conclusion, now.Add(time.Second), nil); d.Verdict != Drop {
				t.Errorf("conclusion with a foreign cookie: %v (%s)", d.Verdict, d.Why)
			}
			conc := withCookie(x.conclusion, ours.Cookie)
			d = g.Inspect(callerAddr, conc, now.Add(time.Second), nil)
			if d.Verdict != Conclude || !d.Conclusion.HasStreamID {
				t.Fatalf("conclusion: %v (%s) %+v", d.Verdict, d.Why, d.Conclusion)
			}
			want, _ := wire.ParseConclusion(&d.Handshake)
			if d.Conclusion != want {
				t.Errorf("conclusion info %+v, want %+v", d.Conclusion, want)
			}
			// Everything else the caller sent is dropped silently.
			for i, b := range x.caller {
				if typ, ok := wire.HandshakeTypeOf(b); ok && (typ == wire.HSInduction || typ == wire.HSConclusion) {
					continue
				}
				if d := g.Inspect(callerAddr, b, now, nil); d.Verdict != Drop {
					t.Errorf("caller datagram %d: %v (%s)", i, d.Verdict, d.Why)
				}
			}
		})
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Drop: "drop", Reply: "reply", Conclude: "conclude", 7: "drop"} {
		if v.String() != want {
			t.Errorf("Verdict(%d) = %q", v, v.String())
		}
	}
}
