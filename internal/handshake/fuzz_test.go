package handshake

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/cookie"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
	"github.com/srtroute/caddy-l4-srt/internal/wire/wiretest"
)

// A fuzz script is a sequence of steps, each a control byte, a 16-bit
// length and that many bytes of datagram (the length is clipped to what is
// left, so every byte string is a script).
type step struct {
	ctl  byte
	data []byte
}

const maxSteps = 64

func splitScript(b []byte) []step {
	var steps []step
	for len(b) > 0 && len(steps) < maxSteps {
		s := step{ctl: b[0]}
		b = b[1:]
		n := 0
		if len(b) >= 2 {
			n = int(binary.BigEndian.Uint16(b))
			b = b[2:]
		} else {
			b = nil
		}
		n = min(n, len(b))
		s.data, b = b[:n], b[n:]
		steps = append(steps, s)
	}
	return steps
}

func joinScript(steps ...step) []byte {
	var b []byte
	for _, s := range steps {
		b = append(b, s.ctl)
		b = binary.BigEndian.AppendUint16(b, uint16(len(s.data)))
		b = append(b, s.data...)
	}
	return b
}

// clockSteps: the high nibble of a control byte advances the fake clock.
var clockSteps = [16]time.Duration{
	0, time.Microsecond, 10 * time.Millisecond, 100 * time.Millisecond,
	249 * time.Millisecond, RetryInterval, 251 * time.Millisecond, time.Second,
	3 * time.Second, 30 * time.Second, 59 * time.Second, time.Minute,
	61 * time.Second, 2 * time.Minute, time.Hour, -time.Second,
}

const (
	clock0    = 0x00
	clock1ms  = 0x10 // 1 µs
	clock250  = 0x50
	clock1s   = 0x70
	clock1min = 0xb0
)

// FuzzGate control byte: bits 0-1 pick the sender's address, bits 2-3 what
// to put in the cookie field first (0 keep, 1 the jar's cookie for the
// sender now, 2 the jar's cookie for the next address, 3 the cookie of the
// last induction reply to anyone), bits 4-7 the clock step.
const (
	gateKeep        = 0 << 2
	gateOwnCookie   = 1 << 2
	gateOtherCookie = 2 << 2
	gateLastReply   = 3 << 2
)

var gateAddrs = [4]netip.AddrPort{
	netip.MustParseAddrPort("127.0.0.1:40000"),
	netip.MustParseAddrPort("127.0.0.1:40001"),
	netip.MustParseAddrPort("10.0.0.1:40000"),
	netip.MustParseAddrPort("[2001:db8::1]:40000"),
}

func FuzzGate(f *testing.F) {
	ind := wire.AppendInduction(nil, 0x1234, 0, 1500, 8192, wire.EncodePeerIP(netip.MustParseAddr("127.0.0.1")), 0)
	conc := wire.Handshake{Version: 5, Type: wire.HSConclusion, SocketID: 0x1234}
	concB := wire.AppendExtension(conc.Append(nil), wire.ExtSID, wire.AppendStreamID(nil, "live/x"))
	f.Add(joinScript(step{0, ind}, step{clock1ms | gateLastReply, concB}))
	f.Add(joinScript(step{1, ind}, step{clock1min | 2 | gateOtherCookie, concB}))
	f.Fuzz(func(t *testing.T, script []byte) {
		jar := cookie.NewJarWithSecret([]byte("fuzz gate"))
		g := &Gate{Jar: jar}
		now := t0
		issued := map[netip.AddrPort]map[uint32]bool{}
		issue := func(a netip.AddrPort, c uint32) {
			if issued[a] == nil {
				issued[a] = map[uint32]bool{}
			}
			issued[a][c] = true
		}
		var lastReply uint32
		for i, s := range splitScript(script) {
			now = now.Add(clockSteps[s.ctl>>4])
			addr := gateAddrs[s.ctl&3]
			b := clone(s.data)
			switch s.ctl & (3 << 2) {
			case gateOwnCookie:
				c := jar.Issue(addr, now)
				issue(addr, c)
				wire.SetCookie(b, c)
			case gateOtherCookie:
				other := gateAddrs[(s.ctl+1)&3]
				c := jar.Issue(other, now)
				issue(other, c)
				wire.SetCookie(b, c)
			case gateLastReply:
				wire.SetCookie(b, lastReply)
			}
			in := clone(b)
			d := g.Inspect(addr, b, now, nil)
			if !bytes.Equal(in, b) {
				t.Fatalf("step %d: Inspect modified the datagram", i)
			}
			if len(d.Reply) > len(b) {
				t.Fatalf("step %d: reply of %d bytes to a %d-byte datagram", i, len(d.Reply), len(b))
			}
			hs, perr := wire.ParseHandshake(b)
			switch d.Verdict {
			case Drop:
				if d.Reply != nil {
					t.Fatalf("step %d: reply on drop", i)
				}
			case Reply:
				if perr != nil || hs.Header.DestSocket != 0 {
					t.Fatalf("step %d: reply to a datagram that is no handshake to a listener", i)
				}
				if wire.IsShutdown(d.Reply) {
					if hs.Version >= 5 || wire.DestSocketOf(d.Reply) != hs.SocketID {
						t.Fatalf("step %d: SHUTDOWN to %#x for version %d", i, wire.DestSocketOf(d.Reply), hs.Version)
					}
					continue
				}
				r, err := wire.ParseHandshake(d.Reply)
				if err != nil || len(d.Reply) != wire.HandshakeLen || r.Header.DestSocket != hs.SocketID {
					t.Fatalf("step %d: reply %x (%v)", i, d.Reply, err)
				}
				switch {
				case hs.Type == wire.HSInduction:
					if r.Type != wire.HSInduction || r.Cookie != jar.Issue(addr, now) || r.SocketID != hs.SocketID || r.Version != 5 || r.ExtField != wire.Magic {
						t.Fatalf("step %d: induction reply %+v", i, r)
					}
					issue(addr, r.Cookie)
					lastReply = r.Cookie
				case !r.Type.IsRejection():
					t.Fatalf("step %d: reply of type %v to a %v", i, r.Type, hs.Type)
				case hs.Type == wire.HSConclusion && !jar.Valid(addr, hs.Cookie, now):
					t.Fatalf("step %d: rejected a conclusion without a valid cookie (a reflector)", i)
				}
			case Conclude:
				if perr != nil || hs.Type != wire.HSConclusion || hs.Header.DestSocket != 0 || (hs.Version != 4 && hs.Version != 5) {
					t.Fatalf("step %d: concluded %+v (%v)", i, hs, perr)
				}
				if !issued[addr][hs.Cookie] {
					t.Fatalf("step %d: concluded with cookie %#x never issued to %v", i, hs.Cookie, addr)
				}
				if hs.Cookie != jar.Issue(addr, now) && hs.Cookie != jar.Issue(addr, now.Add(-cookie.Bucket)) {
					t.Fatalf("step %d: concluded with a stale cookie", i)
				}
				if !bytes.Equal(d.Handshake.Append(nil), b) {
					t.Fatalf("step %d: Decision.Handshake is not the datagram", i)
				}
				if hs.Version == 5 {
					info, err := wire.ParseConclusion(&hs)
					if err != nil || info != d.Conclusion {
						t.Fatalf("step %d: concluded a malformed conclusion: %v", i, err)
					}
				}
				if d.Reply != nil {
					t.Fatalf("step %d: reply on conclude", i)
				}
			default:
				t.Fatalf("step %d: verdict %d", i, d.Verdict)
			}
		}
	})
}

// FuzzDialer control byte: bits 0-3 the clock step, bit 4 address the
// datagram to the Dialer's socket ID first, bit 5 call Retry before
// feeding the datagram.
const (
	dialToUs  = 1 << 4
	dialRetry = 1 << 5
)

var dialClock = [16]time.Duration{
	0, time.Microsecond, 10 * time.Millisecond, 100 * time.Millisecond,
	249 * time.Millisecond, RetryInterval, 251 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 3 * time.Second, time.Minute,
	time.Hour, -time.Millisecond, -time.Second, 72 * time.Minute, // 72 min > 2^32 µs
}

func FuzzDialer(f *testing.F) {
	conc := wire.AppendExtension((&wire.Handshake{Version: 5, Type: wire.HSConclusion, SocketID: 0x1234}).Append(nil),
		wire.ExtSID, wire.AppendStreamID(nil, "live/x"))
	f.Add(conc, joinScript(step{dialToUs | 5, upstreamHS(wire.HSInduction, 0, 9)}, step{dialToUs | 1, upstreamHS(wire.HSConclusion, 0, 9)}), false)
	f.Add(conc, joinScript(step{dialRetry | 5, nil}, step{dialToUs | 5, upstreamHS(wire.RejXForbidden.HandshakeType(), 0, 0)}), true)
	f.Fuzz(func(t *testing.T, conclusion, script []byte, substitute bool) {
		orig := clone(conclusion)
		hs, perr := wire.ParseHandshake(conclusion)
		socketID := hs.SocketID
		if substitute {
			socketID = ^socketID
		}
		received := t0
		d, err := NewDialer(DialerConfig{Conclusion: conclusion, Received: received, SocketID: socketID, UpstreamIP: upstreamIP, CallerIP: callerIPAddr})
		if (err != nil) != (perr != nil) {
			t.Fatalf("NewDialer error %v, ParseHandshake error %v", err, perr)
		}
		if err != nil {
			return
		}
		now := received
		ind, err := wire.ParseHandshake(d.Start(now))
		if err != nil || ind.Type != wire.HSInduction || ind.SocketID != socketID || ind.Header.DestSocket != 0 || len(d.Packet()) != wire.HandshakeLen {
			t.Fatalf("induction %+v (%v)", ind, err)
		}
		const (
			inInduction = iota
			inConclusion
			done
		)
		phase := inInduction
		lastSend := now
		var cookieSeen uint32
		wantTS := func() uint32 {
			delay := max(now.Sub(received), 0)
			return hs.Header.Timestamp + uint32(delay.Microseconds())
		}
		for i, s := range splitScript(script) {
			now = now.Add(dialClock[s.ctl&15])
			if s.ctl&dialRetry != 0 {
				p := d.Retry(now)
				due := phase != done && !now.Before(lastSend.Add(RetryInterval))
				if (p != nil) != due {
					t.Fatalf("step %d: Retry returned %d bytes, due %v", i, len(p), due)
				}
				if p != nil {
					lastSend = now
					if !bytes.Equal(p, d.Packet()) {
						t.Fatalf("step %d: Retry returned something else than Packet", i)
					}
					if phase == inConclusion {
						checkReplayedConclusion(t, p, orig, socketID, cookieSeen, wantTS())
					}
				}
			}
			b := clone(s.data)
			if s.ctl&dialToUs != 0 {
				wire.SetDestSocket(b, socketID)
			}
			in := clone(b)
			out := d.Receive(now, b)
			if !bytes.Equal(in, b) {
				t.Fatalf("step %d: Receive modified the datagram", i)
			}
			if !bytes.Equal(conclusion, orig) {
				t.Fatalf("step %d: the caller's conclusion was modified", i)
			}
			// libsrt refuses an HSv4 caller with a SHUTDOWN to socket 0.
			refusal := wire.IsShutdown(b) && (wire.DestSocketOf(b) == socketID || wire.DestSocketOf(b) == 0)
			if out != Ignored && wire.DestSocketOf(b) != socketID && !refusal {
				t.Fatalf("step %d: outcome %v for a datagram to %#x, not to %#x", i, out, wire.DestSocketOf(b), socketID)
			}
			if refusal && out == Rejected {
				if phase != inConclusion || d.RejectReason() != wire.RejPeer {
					t.Fatalf("step %d: SHUTDOWN refusal in phase %d, reason %v", i, phase, d.RejectReason())
				}
				// The caller hears a refusal it can read, addressed to it.
				if r := d.Response(); wire.DestSocketOf(r) != hs.SocketID || len(r) > len(orig) {
					t.Fatalf("step %d: refusal %x for a caller socket %#x", i, r, hs.SocketID)
				}
				phase = done
				continue
			}
			typ, _ := wire.HandshakeTypeOf(b)
			switch out {
			case Ignored:
				if phase == done && d.Response() == nil {
					t.Fatalf("step %d: done without a response", i)
				}
			case Send:
				if phase != inInduction || typ != wire.HSInduction {
					t.Fatalf("step %d: Send in phase %d for a %v", i, phase, typ)
				}
				phase, lastSend = inConclusion, now
				cookieSeen = mustParse(t, b).Cookie
				if cookieSeen == 0 || d.Cookie() != cookieSeen || !d.InConclusion() {
					t.Fatalf("step %d: cookie %#x / %#x", i, cookieSeen, d.Cookie())
				}
				checkReplayedConclusion(t, d.Packet(), orig, socketID, cookieSeen, wantTS())
			case Accepted, Rejected:
				if phase == done {
					t.Fatalf("step %d: %v after the end", i, out)
				}
				if out == Accepted && (phase != inConclusion || typ != wire.HSConclusion) {
					t.Fatalf("step %d: Accepted in phase %d by a %v", i, phase, typ)
				}
				if out == Rejected && (!typ.IsRejection() || d.RejectReason() != typ.Reason()) {
					t.Fatalf("step %d: Rejected by a %v", i, typ)
				}
				phase = done
				r := d.Response()
				if len(r) != len(b) || wire.DestSocketOf(r) != hs.SocketID || !bytes.Equal(r[:12], b[:12]) || !bytes.Equal(r[16:48], b[16:48]) || !bytes.Equal(r[64:], b[64:]) {
					t.Fatalf("step %d: response %x for upstream %x", i, r, b)
				}
				if rh := mustParse(t, r); rh.PeerIP != wire.EncodePeerIP(callerIPAddr) {
					t.Fatalf("step %d: response peer IP %x", i, rh.PeerIP)
				}
			default:
				t.Fatalf("step %d: outcome %d", i, out)
			}
		}
	})
}

var writeCorpus = flag.Bool("write-corpus", false, "rewrite the capture-derived seeds in testdata/fuzz")

// TestWriteSeedCorpus writes FuzzGate and FuzzDialer seeds made of the
// captured exchanges:
//
//	go test ./internal/handshake -run TestWriteSeedCorpus -write-corpus
func TestWriteSeedCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to rewrite testdata/fuzz")
	}
	for _, x := range loadExchanges(t) {
		// Gate: the caller's first attempt as it came, the conclusion
		// echoing the cookie our induction reply carried.
		var gate []step
		for _, b := range x.caller {
			ctl := byte(clock0)
			if typ, ok := wire.HandshakeTypeOf(b); ok && typ == wire.HSConclusion {
				ctl = clock1ms | gateLastReply
			}
			gate = append(gate, step{ctl, b})
		}
		// Dialer: the listener's answers, 250 ms apart, a retry before each.
		var dial []step
		for _, b := range x.upstream {
			dial = append(dial, step{dialRetry | 5, b})
		}
		for _, err := range []error{
			wiretest.WriteFuzzSeed("FuzzGate", "capture-"+x.name, joinScript(gate...)),
			wiretest.WriteFuzzSeed("FuzzDialer", "capture-"+x.name, x.conclusion, joinScript(dial...), false),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// One seed with a substitute socket ID and answers readdressed to it.
	x := loadExchanges(t)[0]
	var dial []step
	for _, b := range x.upstream {
		dial = append(dial, step{dialToUs | 2, b})
	}
	if err := wiretest.WriteFuzzSeed("FuzzDialer", fmt.Sprintf("capture-%s-substitute", x.name), x.conclusion, joinScript(dial...), true); err != nil {
		t.Fatal(err)
	}
}
