package srtmatcher_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
	"github.com/srtroute/caddy-l4-srt/internal/wire/wiretest"
	"github.com/srtroute/caddy-l4-srt/srtmatcher"
)

// fromAddr is a connection that only says where it comes from: Match
// reads the prefetched bytes and the remote address, and, with nothing
// prefetched, whether the first datagram waiting is empty.
type fromAddr struct {
	net.Conn
	remote, local net.Addr
	emptyFirst    bool
}

// Read is what caddy-l4's packet connection answers a read of nothing:
// io.EOF for an empty datagram, nothing for one with bytes.
func (c fromAddr) Read(b []byte) (int, error) {
	if c.emptyFirst {
		return 0, io.EOF
	}
	return 0, nil
}

func (c fromAddr) RemoteAddr() net.Addr { return c.remote }
func (c fromAddr) LocalAddr() net.Addr  { return c.local }

// listener is the address the datagrams match reads reached: sessions
// are the listener's own.
var listener = netip.MustParseAddrPort("127.0.0.1:10080")

// match runs the matcher on one datagram as caddy-l4 hands it over once
// it has prefetched it.
func match(t *testing.T, from netip.AddrPort, datagram []byte) (bool, error) {
	t.Helper()
	cx := layer4.WrapConnection(fromAddr{remote: net.UDPAddrFromAddrPort(from), local: net.UDPAddrFromAddrPort(listener)}, datagram, zap.NewNop())
	return (&srtmatcher.MatchSRT{}).Match(cx)
}

// stranger is an address no session of this process has ever had.
var stranger = netip.MustParseAddrPort("192.0.2.7:40000")

// TestMatchCapturedDatagrams: of the datagrams real peers exchanged, a
// caller's handshakes to a listener match (induction and conclusion,
// destination socket 0), and nothing else does when it comes from an
// address with no session: listener answers, caller data and control.
func TestMatchCapturedDatagrams(t *testing.T) {
	caps, err := wiretest.LoadDir("../internal/wire/testdata/captures")
	if err != nil {
		t.Fatal(err)
	}
	if len(caps) == 0 {
		t.Fatal("no captures")
	}
	var matched, unmatched int
	for _, c := range caps {
		for i, d := range c.Datagrams {
			hsType, isHS := wire.HandshakeTypeOf(d.Bytes)
			want := d.FromCaller && isHS && wire.DestSocketOf(d.Bytes) == 0 &&
				(hsType == wire.HSInduction || hsType == wire.HSConclusion)
			got, err := match(t, stranger, d.Bytes)
			if err != nil {
				t.Fatalf("%s #%d: %v", c.Name, i, err)
			}
			if got != want {
				t.Errorf("%s #%d (from caller %v, handshake %v): matched %v, want %v", c.Name, i, d.FromCaller, isHS, got, want)
			}
			if got {
				matched++
			} else {
				unmatched++
			}
		}
	}
	// Every capture opens with an induction and a conclusion from the caller.
	if matched < 2*len(caps) || unmatched == 0 {
		t.Fatalf("%d matched, %d unmatched in %d captures: the table proves nothing", matched, unmatched, len(caps))
	}
}

// TestMatchTable: datagrams that must and must not match, from an address
// with no session.
func TestMatchTable(t *testing.T) {
	induction := wire.AppendInduction(nil, 0x1234, 1, 1500, 8192, [16]byte{}, 0)
	withVersion := func(v uint32) []byte {
		b := bytes.Clone(induction)
		b[16], b[17], b[18], b[19] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		return b
	}
	toSocket := bytes.Clone(induction)
	toSocket[15] = 9 // destination socket 9: a handshake to a caller, not a listener
	data := make([]byte, 16+1316)
	data[3] = 1 // a data packet: the top bit of the first word clear
	cases := []struct {
		name     string
		datagram []byte
		want     bool
	}{
		{"induction", induction, true},
		{"HSv4 induction", withVersion(4), true},
		{"HSv5", withVersion(5), true},
		{"unknown handshake version 3", withVersion(3), false},
		{"unknown handshake version 6", withVersion(6), false},
		{"handshake to a socket", toSocket, false},
		{"cut short handshake", induction[:40], false},
		{"header only", induction[:16], false},
		{"data packet", data, false},
		{"one byte", []byte{0x80}, false},
		{"DNS query", []byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, false},
		{"larger than the MTU", append(bytes.Clone(induction), make([]byte, wire.MaxMTU)...), false},
	}
	for _, c := range cases {
		got, err := match(t, stranger, c.datagram)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: matched %v, want %v", c.name, got, c.want)
		}
	}
}

// TestMatchNothingPrefetched: with no bytes yet, the matcher asks caddy-l4
// for more rather than deciding, unless the first datagram is empty: that
// sender is matched (caddy-l4 would take the empty datagram for the end
// of the connection and give it up with its burst still queued).
func TestMatchNothingPrefetched(t *testing.T) {
	got, err := match(t, stranger, nil)
	if got || !errors.Is(err, layer4.ErrConsumedAllPrefetchedBytes) {
		t.Fatalf("nothing prefetched: matched %v, %v; want ErrConsumedAllPrefetchedBytes", got, err)
	}
	cx := layer4.WrapConnection(fromAddr{remote: net.UDPAddrFromAddrPort(stranger), local: net.UDPAddrFromAddrPort(listener), emptyFirst: true}, nil, zap.NewNop())
	if got, err := (&srtmatcher.MatchSRT{}).Match(cx); !got || err != nil {
		t.Fatalf("an empty first datagram: matched %v, %v; want matched", got, err)
	}
}

// TestMatchRelayedSession: any datagram from a caller whose session this
// process relays matches (so it reaches the session after a reload), and
// so does one from a caller whose session ended moments ago (so it is
// told again that the session is over). The same datagram from another
// address does not.
func TestMatchRelayedSession(t *testing.T) {
	origin := &srtbackend.Server{Name: "origin"}
	if err := origin.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(origin.Close)
	p := testpeer.StartProxy(t, map[string]any{
		"data_path": "listener",
		"routes":    []any{map[string]any{"to": []string{"udp/" + origin.Addr()}}},
	}, testpeer.Options{})
	conn, err := testpeer.Dial(p.Addr, "#!::r=live/matcher,m=publish", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var caller netip.AddrPort
	for _, s := range session.Default.Sessions() {
		if s.Upstream.RemoteAddr().String() == origin.Addr() {
			caller = s.Caller
		}
	}
	if !caller.IsValid() {
		t.Fatal("no session to the origin in the registry")
	}
	defer func(l netip.AddrPort) { listener = l }(listener)
	other := listener
	listener = netip.MustParseAddrPort(p.Addr)
	// The same caller address on another listener is another caller.
	if got, err := (func() (bool, error) {
		defer func(l netip.AddrPort) { listener = l }(listener)
		listener = other
		return match(t, caller, make([]byte, 16+188))
	})(); err != nil || got {
		t.Errorf("data from the session's caller to another listener: matched %v (%v)", got, err)
	}
	// A data packet: no handshake, so only the session makes it match.
	data := make([]byte, 16+188)
	data[3] = 1
	for _, c := range []struct {
		name string
		from netip.AddrPort
		want bool
	}{
		{"the session's caller", caller, true},
		{"another port of the caller's host", netip.AddrPortFrom(caller.Addr(), caller.Port()+1), false},
		{"a stranger", stranger, false},
	} {
		if got, err := match(t, c.from, data); err != nil || got != c.want {
			t.Errorf("live session, data from %s: matched %v (%v), want %v", c.name, got, err, c.want)
		}
	}
	// As a listener-relayed caller arrives on a dual-stack port.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(caller.Addr().As16()), caller.Port())
	if got, err := match(t, mapped, data); err != nil || !got {
		t.Errorf("live session, data from the caller's IPv4-mapped address: matched %v (%v)", got, err)
	}

	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for slices.ContainsFunc(session.Default.Sessions(), func(s *session.Session) bool { return s.Caller == caller }) {
		if time.Now().After(deadline) {
			t.Fatal("the session did not end after the caller closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := match(t, caller, data); err != nil || !got {
		t.Errorf("ended session, data from its caller: matched %v (%v), want a match", got, err)
	}
	if got, err := match(t, stranger, data); err != nil || got {
		t.Errorf("ended session, data from a stranger: matched %v (%v)", got, err)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, c := range []struct {
		input string
		ok    bool
	}{
		{"srt", true},
		{"srt extra", false},
		{"srt {\n\tsomething\n}", false},
	} {
		err := (&srtmatcher.MatchSRT{}).UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.input))
		if (err == nil) != c.ok {
			t.Errorf("%q: error %v, want ok=%v", c.input, err, c.ok)
		}
	}
}
