package handshake

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

var (
	upstreamIP   = netip.MustParseAddr("127.0.0.1")
	callerIPAddr = netip.MustParseAddr("192.0.2.7")
)

// checkReplayedConclusion checks that p is the caller's conclusion conc as
// the Dialer must replay it: every byte the same except the timestamp,
// the socket ID, the cookie and the peer IP field.
func checkReplayedConclusion(t *testing.T, p, conc []byte, socketID, cookie, ts uint32) {
	t.Helper()
	if len(p) != len(conc) {
		t.Fatalf("replayed conclusion is %d bytes, caller's %d", len(p), len(conc))
	}
	hs, orig := mustParse(t, p), mustParse(t, conc)
	if hs.Header.Timestamp != ts {
		t.Errorf("timestamp %d, want %d", hs.Header.Timestamp, ts)
	}
	if hs.SocketID != socketID || hs.Cookie != cookie || hs.PeerIP != wire.EncodePeerIP(upstreamIP) {
		t.Errorf("socket ID %#x cookie %#x peer %x; want %#x %#x %x", hs.SocketID, hs.Cookie, hs.PeerIP, socketID, cookie, wire.EncodePeerIP(upstreamIP))
	}
	if hs.ISN != orig.ISN {
		t.Errorf("ISN %#x, want the caller's %#x", hs.ISN, orig.ISN)
	}
	for _, r := range [][2]int{{0, 8}, {12, 40}, {wire.HandshakeLen, len(conc)}} {
		if !bytes.Equal(p[r[0]:r[1]], conc[r[0]:r[1]]) {
			t.Errorf("bytes %d..%d changed:\n %x\n %x", r[0], r[1], p[r[0]:r[1]], conc[r[0]:r[1]])
		}
	}
}

// TestDialerCaptured replays every captured caller's conclusion and feeds
// the Dialer what the real listener answered.
func TestDialerCaptured(t *testing.T) {
	for _, x := range loadExchanges(t) {
		t.Run(x.name, func(t *testing.T) {
			conc := mustParse(t, x.conclusion)
			orig := clone(x.conclusion)
			received := t0
			d, err := NewDialer(DialerConfig{Conclusion: x.conclusion, Received: received, SocketID: conc.SocketID, UpstreamIP: upstreamIP, CallerIP: callerIPAddr})
			if err != nil {
				t.Fatal(err)
			}
			// The induction we send carries the caller's parameters.
			ind := mustParse(t, d.Start(received.Add(time.Millisecond)))
			if len(d.Packet()) != wire.HandshakeLen || ind.Header.DestSocket != 0 || ind.Version != 4 || ind.ExtField != 2 ||
				ind.Type != wire.HSInduction || ind.SocketID != conc.SocketID || ind.Cookie != 0 ||
				ind.ISN != conc.ISN || ind.MTU != conc.MTU || ind.FlowWindow != conc.FlowWindow || ind.PeerIP != wire.EncodePeerIP(upstreamIP) {
				t.Fatalf("induction %+v", ind)
			}
			if d.InConclusion() {
				t.Fatal("in conclusion before the induction was answered")
			}

			// The listener's induction response: send the conclusion.
			delay := 1234567 * time.Microsecond
			if out := d.Receive(received.Add(delay), x.inductionResponse); out != Send {
				t.Fatalf("induction response: outcome %v", out)
			}
			cookie := mustParse(t, x.inductionResponse).Cookie
			if d.Cookie() != cookie || !d.InConclusion() || d.ConclusionSends() != 1 {
				t.Fatalf("cookie %#x, in conclusion %v, sends %d", d.Cookie(), d.InConclusion(), d.ConclusionSends())
			}
			checkReplayedConclusion(t, d.Packet(), x.conclusion, conc.SocketID, cookie, conc.Header.Timestamp+1234567)
			// With no delay, the replay is the caller's conclusion itself
			// (the captured listener issued the cookie it carries).
			d0, _ := NewDialer(DialerConfig{Conclusion: x.conclusion, Received: received, SocketID: conc.SocketID, UpstreamIP: upstreamIP, CallerIP: callerIPAddr})
			d0.Start(received)
			if d0.Receive(received, x.inductionResponse) != Send || !bytes.Equal(d0.Packet(), x.conclusion) {
				t.Errorf("zero-delay replay differs from the caller's conclusion:\n %x\n %x", d0.Packet(), x.conclusion)
			}

			// A repeated induction response changes nothing.
			before := clone(d.Packet())
			if out := d.Receive(received.Add(delay), x.inductionResponse); out != Ignored || !bytes.Equal(d.Packet(), before) {
				t.Fatalf("repeated induction response: %v", out)
			}

			// The final answer.
			final := mustParse(t, x.final)
			want := Accepted
			if final.Type.IsRejection() {
				want = Rejected
			}
			if out := d.Receive(received.Add(2*delay), x.final); out != want {
				t.Fatalf("final answer: %v, want %v", out, want)
			}
			if want == Rejected && d.RejectReason() != final.Type.Reason() {
				t.Errorf("reject reason %v, want %v", d.RejectReason(), final.Type.Reason())
			}
			resp := d.Response()
			if len(resp) != len(x.final) {
				t.Fatalf("response is %d bytes, listener's %d", len(resp), len(x.final))
			}
			rh := mustParse(t, resp)
			if rh.Header.DestSocket != conc.SocketID || rh.PeerIP != wire.EncodePeerIP(callerIPAddr) {
				t.Errorf("response dest %#x peer %x", rh.Header.DestSocket, rh.PeerIP)
			}
			if !bytes.Equal(resp[:12], x.final[:12]) || !bytes.Equal(resp[16:48], x.final[16:48]) || !bytes.Equal(resp[64:], x.final[64:]) {
				t.Error("response differs from the listener's beyond dest and peer IP")
			}
			// Done: nothing more happens.
			for _, b := range x.upstream {
				if out := d.Receive(received.Add(3*delay), b); out != Ignored {
					t.Errorf("after the final answer: %v", out)
				}
			}
			if p := d.Retry(received.Add(time.Hour)); p != nil {
				t.Error("retry after the final answer")
			}
			if !bytes.Equal(x.conclusion, orig) {
				t.Error("the Dialer modified the caller's conclusion")
			}
		})
	}
}

// newGosrtDialer is a Dialer replaying the captured gosrt conclusion (with
// the cookie 0x40da6b79 the real listener issued).
func newGosrtDialer(t *testing.T, socketID uint32) (*Dialer, []byte) {
	t.Helper()
	conc := unhex(t, gosrtConclusion)
	d, err := NewDialer(DialerConfig{Conclusion: conc, Received: t0, SocketID: socketID, UpstreamIP: upstreamIP, CallerIP: callerIPAddr})
	if err != nil {
		t.Fatal(err)
	}
	return d, conc
}

// upstreamHS builds a listener's handshake answer addressed to dest.
func upstreamHS(typ wire.HandshakeType, dest, cookie uint32) []byte {
	hs := wire.Handshake{
		Header:  wire.Header{Control: true, Type: wire.CtrlHandshake, Timestamp: 99, DestSocket: dest},
		Version: 5, ExtField: wire.Magic, MTU: 1500, FlowWindow: 8192, Type: typ,
		SocketID: 0x0abcdef0, Cookie: cookie, PeerIP: wire.EncodePeerIP(netip.MustParseAddr("127.0.0.1")),
	}
	return hs.Append(nil)
}

func TestDialerRetries(t *testing.T) {
	d, conc := newGosrtDialer(t, gosrtCallerID)
	const ms = time.Millisecond
	ind := clone(d.Start(t0))
	if !d.NextRetry().Equal(t0.Add(RetryInterval)) {
		t.Fatalf("NextRetry = %v", d.NextRetry().Sub(t0))
	}
	// Induction phase: resend every 250 ms of the fake clock.
	for _, step := range []struct {
		at     time.Duration
		resend bool
	}{{0, false}, {249 * ms, false}, {250 * ms, true}, {251 * ms, false}, {499 * ms, false}, {600 * ms, true}, {849 * ms, false}, {850 * ms, true}} {
		p := d.Retry(t0.Add(step.at))
		if (p != nil) != step.resend {
			t.Fatalf("at %v: resend %v, want %v", step.at, p != nil, step.resend)
		}
		if p != nil && !bytes.Equal(p, ind) {
			t.Fatalf("at %v: resent %x, want the induction", step.at, p)
		}
	}
	// Answered at 900 ms: the conclusion goes out, then is resent every
	// 250 ms with its timestamp advanced by the time since it arrived.
	callerTS := mustParse(t, conc).Header.Timestamp
	if d.Receive(t0.Add(900*ms), upstreamHS(wire.HSInduction, gosrtCallerID, 0x5eed)) != Send {
		t.Fatal("induction response not taken")
	}
	checkReplayedConclusion(t, d.Packet(), conc, gosrtCallerID, 0x5eed, callerTS+900_000)
	for _, step := range []struct {
		at     time.Duration
		resend bool
	}{{1000 * ms, false}, {1149 * ms, false}, {1150 * ms, true}, {1399 * ms, false}, {1400 * ms, true}, {2000 * ms, true}} {
		p := d.Retry(t0.Add(step.at))
		if (p != nil) != step.resend {
			t.Fatalf("at %v: resend %v, want %v", step.at, p != nil, step.resend)
		}
		if p != nil {
			checkReplayedConclusion(t, p, conc, gosrtCallerID, 0x5eed, callerTS+uint32(step.at/time.Microsecond))
		}
	}
	if d.ConclusionSends() != 4 {
		t.Errorf("ConclusionSends = %d, want 4", d.ConclusionSends())
	}
	if d.Receive(t0.Add(2100*ms), upstreamHS(wire.HSConclusion, gosrtCallerID, 0)) != Accepted {
		t.Fatal("conclusion response not accepted")
	}
	if d.Retry(t0.Add(time.Hour)) != nil {
		t.Fatal("retry after acceptance")
	}
}

func TestDialerTimestampClock(t *testing.T) {
	// A clock that reads earlier than Received (a step backwards) adds
	// no delay; the 32-bit timestamp wraps like SRT's.
	conc := mutate(unhex(t, gosrtConclusion), 8, 0xffffff00)
	d, err := NewDialer(DialerConfig{Conclusion: conc, Received: t0, SocketID: gosrtCallerID, UpstreamIP: upstreamIP})
	if err != nil {
		t.Fatal(err)
	}
	d.Start(t0)
	if d.Receive(t0.Add(-time.Second), upstreamHS(wire.HSInduction, gosrtCallerID, 1)) != Send {
		t.Fatal("induction response not taken")
	}
	if ts := mustParse(t, d.Packet()).Header.Timestamp; ts != 0xffffff00 {
		t.Errorf("timestamp %#x after a backwards clock, want the caller's", ts)
	}
	// The interval runs from the (backwards) send time.
	if p := d.Retry(t0.Add(-time.Second + RetryInterval - time.Nanosecond)); p != nil {
		t.Fatal("retry before the interval")
	}
	if p := d.Retry(t0.Add(RetryInterval)); p == nil {
		t.Fatal("no retry")
	} else if ts := mustParse(t, p).Header.Timestamp; ts != 250_000-0x100 {
		t.Errorf("timestamp %#x, want the wrapped %#x", ts, 250_000-0x100)
	}
}

func TestDialerIgnores(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before, if set, is fed first (and must give Send).
		before []byte
		b      []byte
	}{
		{name: "induction response to another socket", b: upstreamHS(wire.HSInduction, gosrtCallerID+1, 7)},
		{name: "induction response to socket 0", b: upstreamHS(wire.HSInduction, 0, 7)},
		{name: "induction response without a cookie", b: upstreamHS(wire.HSInduction, gosrtCallerID, 0)},
		{name: "conclusion response before the induction was answered", b: upstreamHS(wire.HSConclusion, gosrtCallerID, 7)},
		{name: "rejection to another socket", b: upstreamHS(wire.RejXForbidden.HandshakeType(), gosrtCallerID+1, 0)},
		{name: "conclusion response to another socket", before: upstreamHS(wire.HSInduction, gosrtCallerID, 7), b: upstreamHS(wire.HSConclusion, 0xdead, 7)},
		{name: "repeated induction response", before: upstreamHS(wire.HSInduction, gosrtCallerID, 7), b: upstreamHS(wire.HSInduction, gosrtCallerID, 8)},
		{name: "agreement", before: upstreamHS(wire.HSInduction, gosrtCallerID, 7), b: upstreamHS(wire.HSAgreement, gosrtCallerID, 7)},
		{name: "waveahand", before: upstreamHS(wire.HSInduction, gosrtCallerID, 7), b: upstreamHS(wire.HSWaveahand, gosrtCallerID, 7)},
		{name: "truncated conclusion response", before: upstreamHS(wire.HSInduction, gosrtCallerID, 7), b: upstreamHS(wire.HSConclusion, gosrtCallerID, 7)[:63]},
		{name: "keepalive to us", before: upstreamHS(wire.HSInduction, gosrtCallerID, 7), b: unhex(t, "80010000 00000000 00000001 3dd6eb55 00000000")},
		{name: "shutdown to us", b: wire.AppendShutdown(nil, gosrtCallerID, 1)},
		{name: "empty", b: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newGosrtDialer(t, gosrtCallerID)
			d.Start(t0)
			if tc.before != nil && d.Receive(t0, tc.before) != Send {
				t.Fatal("setup: induction response not taken")
			}
			packet := clone(d.Packet())
			cookie := d.Cookie()
			if out := d.Receive(t0.Add(time.Millisecond), tc.b); out != Ignored {
				t.Fatalf("outcome %v, want ignored", out)
			}
			if !bytes.Equal(d.Packet(), packet) || d.Cookie() != cookie || d.Response() != nil {
				t.Fatal("an ignored datagram changed the Dialer")
			}
		})
	}
}

func TestDialerRejectedDuringInduction(t *testing.T) {
	d, _ := newGosrtDialer(t, gosrtCallerID)
	d.Start(t0)
	rej := upstreamHS(wire.RejXOverload.HandshakeType(), gosrtCallerID, 0)
	if out := d.Receive(t0, rej); out != Rejected || d.RejectReason() != wire.RejXOverload {
		t.Fatalf("outcome %v reason %v", out, d.RejectReason())
	}
	if wire.DestSocketOf(d.Response()) != gosrtCallerID || len(d.Response()) != len(rej) {
		t.Fatal("rejection not passed on to the caller")
	}
	if d.Retry(t0.Add(time.Second)) != nil {
		t.Fatal("retry after a rejection")
	}
}

// TestDialerSubstituteSocketID: when the upstream sees another socket ID
// than the caller's, the conclusion carries it, answers must be addressed
// to it, and the response reaches the caller rewritten to its own ID.
func TestDialerSubstituteSocketID(t *testing.T) {
	const sub = 0x7000beef
	d, conc := newGosrtDialer(t, sub)
	if ind := mustParse(t, d.Start(t0)); ind.SocketID != sub {
		t.Fatalf("induction socket ID %#x", ind.SocketID)
	}
	// Answers to the caller's own ID are not ours.
	if d.Receive(t0, upstreamHS(wire.HSInduction, gosrtCallerID, 7)) != Ignored {
		t.Fatal("took an induction response addressed to the caller's ID")
	}
	if d.Receive(t0, upstreamHS(wire.HSInduction, sub, 7)) != Send {
		t.Fatal("induction response not taken")
	}
	checkReplayedConclusion(t, d.Packet(), conc, sub, 7, mustParse(t, conc).Header.Timestamp)
	if d.Receive(t0, upstreamHS(wire.HSConclusion, gosrtCallerID, 7)) != Ignored {
		t.Fatal("took a conclusion response addressed to the caller's ID")
	}
	resp := upstreamHS(wire.HSConclusion, sub, 7)
	if d.Receive(t0, resp) != Accepted {
		t.Fatal("conclusion response not accepted")
	}
	if got := wire.DestSocketOf(d.Response()); got != gosrtCallerID {
		t.Fatalf("response to %#x, want the caller's %#x", got, gosrtCallerID)
	}
	if wire.DestSocketOf(resp) != sub {
		t.Fatal("the Dialer modified the upstream's datagram")
	}
}

func TestNewDialerErrors(t *testing.T) {
	for _, b := range [][]byte{nil, unhex(t, gosrtConclusion)[:63], unhex(t, "80010000 00000000 00000001 00000000")} {
		if _, err := NewDialer(DialerConfig{Conclusion: b}); !errors.Is(err, ErrBadConclusion) {
			t.Errorf("NewDialer(%d bytes) error = %v", len(b), err)
		}
	}
}

// libsrt refuses an HSv4 caller with a SHUTDOWN addressed to socket 0:
// after the conclusion went out, that is a rejection, passed to the
// caller in the form it understands.
func TestDialerShutdownIsARefusal(t *testing.T) {
	for _, dest := range []uint32{gosrtCallerID, 0} {
		d, conc := newGosrtDialer(t, gosrtCallerID)
		d.Start(t0)
		if d.Receive(t0, wire.AppendShutdown(nil, dest, 0)) != Ignored {
			t.Fatal("a SHUTDOWN before the conclusion counted")
		}
		if d.Receive(t0, upstreamHS(wire.HSInduction, gosrtCallerID, 0x5eed)) != Send {
			t.Fatal("induction response not taken")
		}
		if out := d.Receive(t0, wire.AppendShutdown(nil, dest+1, 0)); dest != 0 && out != Ignored {
			t.Fatal("a SHUTDOWN for another socket counted")
		}
		if out := d.Receive(t0, wire.AppendShutdown(nil, dest, 0)); out != Rejected || d.RejectReason() != wire.RejPeer {
			t.Fatalf("dest %d: outcome %v, reason %v", dest, out, d.RejectReason())
		}
		// The caller is HSv5: it gets a rejection handshake to its socket.
		hs := mustParse(t, d.Response())
		if !hs.Type.IsRejection() || hs.Type.Reason() != wire.RejPeer || hs.Header.DestSocket != mustParse(t, conc).SocketID {
			t.Fatalf("response to the caller: %+v", hs)
		}
	}
}
