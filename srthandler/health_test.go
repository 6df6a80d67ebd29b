package srthandler_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// whereIs dials a publisher for each name and reports which backend it
// reached; a caller that cannot connect is reported as "".
func whereIs(t *testing.T, proxy string, names []string, backends map[string]*srtbackend.Server, timeout time.Duration) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		id := "#!::r=" + n + ",m=publish"
		before := map[string]int{}
		for label, b := range backends {
			before[label] = len(b.Conns())
		}
		c, err := testpeer.Dial(proxy, id, testpeer.DialOptions{Timeout: timeout})
		if err != nil {
			out[n] = ""
			continue
		}
		c.Close()
		// The backend answers before it records the connection.
		for deadline := time.Now().Add(time.Second); out[n] == "" && time.Now().Before(deadline); {
			for label, b := range backends {
				if len(b.Conns()) > before[label] {
					out[n] = label
				}
			}
			time.Sleep(time.Millisecond)
		}
	}
	return out
}

// A dead SRT server stops getting callers within a check interval or two,
// only its streams move, and they move back when it returns.
func TestActiveHealthChecks(t *testing.T) {
	backends := map[string]*srtbackend.Server{"a": startBackend(t, "a"), "b": startBackend(t, "b"), "c": startBackend(t, "c")}
	// The proxy reaches c through a relay, which swallows the ICMP errors
	// of a dead port: c dies like a crashed host, in silence.
	relayC := testpeer.NewRelay(t, backends["c"].Addr())
	p := testpeer.StartProxy(t, map[string]any{
		"health_interval": "200ms",
		"health_timeout":  "150ms",
		"health_fails":    1,
		"health_passes":   1,
		"fail_duration":   -1, // only the active checks steer here
		"routes":          []any{map[string]any{"to": to(backends["a"].Addr(), backends["b"].Addr(), relayC.Addr)}},
	}, testpeer.Options{})

	names := make([]string, 30)
	for i := range names {
		names[i] = fmt.Sprintf("live/cam%d", i)
	}
	// Callers give up after 700 ms; a handshake stuck on the silent c would
	// take a full second to fail over, so only skipping c gets them in.
	const callerTimeout = 700 * time.Millisecond
	before := whereIs(t, p.Addr, names, backends, callerTimeout)
	onC := 0
	for _, n := range names {
		if before[n] == "" {
			t.Fatalf("%s did not connect with every backend up", n)
		}
		if before[n] == "c" {
			onC++
		}
	}
	if onC == 0 || onC == len(names) {
		t.Fatalf("%d of %d streams on c: the hash does not spread", onC, len(names))
	}

	backends["c"].Close()
	time.Sleep(200*time.Millisecond + 400*time.Millisecond) // interval plus a margin
	during := whereIs(t, p.Addr, names, backends, callerTimeout)
	for _, n := range names {
		switch {
		case during[n] == "":
			t.Errorf("%s: caller could not connect while c was down", n)
		case during[n] == "c":
			t.Errorf("%s: reached the dead backend", n)
		case before[n] != "c" && during[n] != before[n]:
			t.Errorf("%s moved from %s to %s though its backend never went down", n, before[n], during[n])
		}
	}

	revived := &srtbackend.Server{Name: "c"}
	if err := revived.Listen(backends["c"].Addr()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(revived.Close)
	backends["c"] = revived
	time.Sleep(200*time.Millisecond + 400*time.Millisecond)
	after := whereIs(t, p.Addr, names, backends, callerTimeout)
	for _, n := range names {
		if after[n] != before[n] {
			t.Errorf("%s: on %s before c died, on %q after it came back", n, before[n], after[n])
		}
	}
}

// With every upstream dead the caller hears 1503 at once, not a timeout.
func TestAllUpstreamsDown(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"health_interval": "200ms",
		"health_timeout":  "150ms",
		"health_fails":    1,
		"routes":          []any{map[string]any{"to": to(a.Addr(), b.Addr())}},
	}, testpeer.Options{})
	a.Close()
	b.Close()
	time.Sleep(600 * time.Millisecond)
	start := time.Now()
	_, err := testpeer.Dial(p.Addr, "live/x", testpeer.DialOptions{})
	took := time.Since(start)
	if code, ok := testpeer.RejectReason(err); !ok || code != 1503 {
		t.Fatalf("got %v, want rejection 1503", err)
	}
	if took > 300*time.Millisecond {
		t.Errorf("rejection took %v; with no healthy upstream it needs no handshake", took)
	}
}

// Without active checks, the first caller to hit a dead upstream fails
// over within the handshake and takes it out for fail_duration.
func TestPassiveHealth(t *testing.T) {
	a := startBackend(t, "a")
	// The first upstream swallows everything: a relay that forwards
	// nothing, so what the proxy still sends it can be counted.
	dead := testpeer.NewRelay(t, a.Addr())
	dead.Pause()
	p := testpeer.StartProxy(t, map[string]any{
		"fail_duration": "5s",
		"routes":        []any{map[string]any{"to": to(dead.Addr, a.Addr()), "lb_policy": "first"}},
	}, testpeer.Options{})
	var afterFirst int64
	for i := range 5 {
		c, err := testpeer.Dial(p.Addr, fmt.Sprintf("live/%d", i), testpeer.DialOptions{})
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		c.Close()
		if i == 0 {
			afterFirst = dead.Seen()
		}
	}
	if n := len(a.Conns()); n != 5 {
		t.Fatalf("a got %d of 5 callers", n)
	}
	// Only the first caller's attempt may reach the dead upstream: it
	// failed, so passive health keeps the next callers away from it.
	if afterFirst == 0 {
		t.Fatal("the first caller never tried the dead upstream")
	}
	if n := dead.Seen(); n != afterFirst {
		t.Errorf("the dead upstream got %d more datagrams after it failed", n-afterFirst)
	}
}

// least_sessions spreads concurrent callers evenly and keeps doing so as
// sessions end: its counts are released exactly.
func TestLeastSessionsBalances(t *testing.T) {
	bs := []*srtbackend.Server{startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")}
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{"to": to(bs[0].Addr(), bs[1].Addr(), bs[2].Addr()), "lb_policy": "least_sessions"}},
	}, testpeer.Options{})
	type conn interface{ Close() error }
	dial := func(n int, prefix string) []conn {
		out := make([]conn, n)
		errs := make(chan error, n)
		for i := range n {
			go func() {
				c, err := testpeer.Dial(p.Addr, fmt.Sprintf("#!::r=%s/%d,m=publish", prefix, i), testpeer.DialOptions{})
				out[i] = c
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	balanced := func(what string, want int) {
		t.Helper()
		waitFor(t, 3*time.Second, what, func() bool {
			total := 0
			for _, b := range bs {
				total += b.Live()
			}
			return total == 3*want
		})
		for _, b := range bs {
			if n := b.Live(); n < want-1 || n > want+1 {
				t.Errorf("%s: %s has %d live sessions, want %d±1", what, b.Name, n, want)
			}
		}
	}
	first := dial(30, "one")
	balanced("30 concurrent callers", 10)

	// End every session on a: its count must drop back to zero, so the
	// next ten callers all go there.
	bs[0].Hangup()
	waitFor(t, 3*time.Second, "a's sessions to end", func() bool { return bs[0].Live() == 0 })
	waitFor(t, 3*time.Second, "the proxy to end a's sessions", func() bool { return session.Default.Len() == 20 })
	second := dial(10, "two")
	balanced("after a's sessions ended and ten more came", 10)
	for _, c := range append(first, second...) {
		c.Close()
	}
}

// An upstream that answers our induction but never a caller's conclusion
// (gosrt drops conclusions it cannot parse) is alive: that caller gets
// gateway (1502), and the upstream stays in for the next caller.
func TestSilentConclusionDoesNotTakeUpstreamOut(t *testing.T) {
	b := startBackend(t, "b")
	relay := testpeer.NewRelay(t, b.Addr())
	var dropConclusions atomic.Bool
	dropConclusions.Store(true)
	relay.SetDrop(func(toBackend bool, p []byte) bool {
		typ, ok := wire.HandshakeTypeOf(p)
		return toBackend && ok && typ == wire.HSConclusion && dropConclusions.Load()
	})
	p := testpeer.StartProxy(t, map[string]any{
		"handshake_timeout": "1s",
		"routes":            []any{map[string]any{"to": to(relay.Addr)}},
	}, testpeer.Options{})
	_, err := testpeer.Dial(p.Addr, "live/dropped", testpeer.DialOptions{})
	if code, ok := testpeer.RejectReason(err); !ok || code != 1502 {
		t.Fatalf("caller whose conclusion vanished: %v, want rejection 1502", err)
	}
	dropConclusions.Store(false)
	c, err := testpeer.Dial(p.Addr, "live/next", testpeer.DialOptions{})
	if err != nil {
		t.Fatalf("the next caller: %v (was the live upstream taken out?)", err)
	}
	c.Close()
}
