package handshake

import (
	"net/netip"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/cookie"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
	"github.com/srtroute/caddy-l4-srt/internal/wire/wiretest"
)

// t0 is the fake clock's start; it begins a cookie bucket.
var t0 = time.Unix(1_700_000_040, 0)

var (
	callerAddr = netip.MustParseAddrPort("127.0.0.1:40000")
	otherAddr  = netip.MustParseAddrPort("127.0.0.1:40001")
)

func testJar() *cookie.Jar { return cookie.NewJarWithSecret([]byte("handshake tests")) }

// unhex decodes hex that may be grouped with spaces.
var unhex = wiretest.Unhex

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// exchange is the first connection attempt of a capture.
type exchange struct {
	name string
	// induction and conclusion are the caller's first ones.
	induction, conclusion []byte
	// inductionResponse and final are the listener's answers: final is
	// its conclusion response or rejection.
	inductionResponse, final []byte
	// upstream is everything the listener sent in this attempt, in order.
	upstream [][]byte
	// caller is everything the caller sent in this attempt, in order.
	caller [][]byte
}

// loadExchanges reads the first attempt of every capture in
// ../wire/testdata/captures.
func loadExchanges(t testing.TB) []exchange {
	t.Helper()
	caps, err := wiretest.LoadDir(wiretest.CapturesDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []exchange
	for _, c := range caps {
		x := exchange{name: c.Name}
		for _, d := range c.Datagrams {
			typ, isHS := wire.HandshakeTypeOf(d.Bytes)
			if d.FromCaller && isHS && typ == wire.HSInduction && x.induction != nil {
				break // the caller's next attempt
			}
			if d.FromCaller {
				x.caller = append(x.caller, d.Bytes)
			} else {
				x.upstream = append(x.upstream, d.Bytes)
			}
			switch {
			case !isHS:
			case d.FromCaller && typ == wire.HSInduction:
				x.induction = d.Bytes
			case d.FromCaller && typ == wire.HSConclusion && x.conclusion == nil:
				x.conclusion = d.Bytes
			case !d.FromCaller && typ == wire.HSInduction:
				x.inductionResponse = d.Bytes
			case !d.FromCaller && (typ == wire.HSConclusion || typ.IsRejection()):
				x.final = d.Bytes
			}
		}
		if x.induction == nil || x.conclusion == nil || x.inductionResponse == nil || x.final == nil {
			t.Fatalf("capture %s lacks a complete first handshake", c.Name)
		}
		out = append(out, x)
	}
	if len(out) == 0 {
		t.Fatal("no captures")
	}
	return out
}

func mustParse(t testing.TB, b []byte) wire.Handshake {
	t.Helper()
	hs, err := wire.ParseHandshake(b)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}
