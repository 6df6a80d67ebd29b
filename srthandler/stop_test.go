package srthandler_test

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// startLiveStream connects a srt-live-transmit caller through p to origin
// and keeps it sending until the test ends or it exits.
func startLiveStream(t *testing.T, p *testpeer.Proxy, origin *testpeer.SLTListener) *testpeer.SLTCaller {
	t.Helper()
	c := testpeer.StartSLTCaller(t, p.Addr, "live/stop", testpeer.SLTOptions{})
	if !c.Connected() {
		t.Fatalf("caller did not connect; stderr:\n%s", c.Stderr())
	}
	var stop atomic.Bool
	t.Cleanup(func() { stop.Store(true) })
	go feedUntilExit(c, &stop)
	waitFor(t, 5*time.Second, "the origin to accept the stream", origin.Accepted)
	return c
}

// TestStopEndsSessions: caddy.Stop() (what `caddy stop` and SIGTERM end
// with) sends SHUTDOWN both ways: the libsrt caller and the libsrt origin
// both see their connection closed within a second, and the port is free.
func TestStopEndsSessions(t *testing.T) {
	origin := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
	p := testpeer.StartProxy(t, map[string]any{"routes": []any{map[string]any{"to": to(origin.Addr)}}}, testpeer.Options{})
	c := startLiveStream(t, p, origin)
	time.Sleep(200 * time.Millisecond)

	stopped := time.Now()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("caddy.Stop returned after %v", time.Since(stopped))
	for _, peer := range []struct {
		name string
		p    *testpeer.Process
	}{{"caller", c.Process}, {"origin", origin.Process}} {
		if exited, _ := peer.p.Wait(time.Until(stopped.Add(3 * time.Second))); !exited {
			t.Fatalf("%s still connected %v after caddy.Stop", peer.name, time.Since(stopped))
		}
		took := time.Since(stopped)
		t.Logf("%s saw the connection closed %v after caddy.Stop", peer.name, took)
		if took > time.Second {
			t.Errorf("%s saw the connection closed after %v, want within 1s", peer.name, took)
		}
	}
	// A plain bind (no SO_REUSEPORT) fails while any socket holds the port.
	l, err := net.ListenPacket("udp", p.Addr)
	if err != nil {
		t.Fatalf("the listener's port is still bound after caddy.Stop: %v", err)
	}
	l.Close()
}

// TestStopGracePeriod: with grace_period, a live stream goes on to its end
// after caddy.Stop while a new caller is refused with overload (1402),
// answered rather than left to time out.
func TestStopGracePeriod(t *testing.T) {
	origin := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
	p := testpeer.StartProxy(t, map[string]any{
		"grace_period": "5s",
		"routes":       []any{map[string]any{"to": to(origin.Addr)}},
	}, testpeer.Options{})
	live := testpeer.StartSLTCaller(t, p.Addr, "live/grace", testpeer.SLTOptions{})
	if !live.Connected() {
		t.Fatalf("caller did not connect; stderr:\n%s", live.Stderr())
	}
	data := interopPayload(600)
	fed := make(chan error, 1)
	go func() { fed <- live.Feed(data, 1316, 2*time.Millisecond) }()
	waitFor(t, 5*time.Second, "the origin to accept the stream", origin.Accepted)

	stopped := time.Now()
	done := make(chan struct{})
	go func() { _ = caddy.Stop(); close(done) }()
	time.Sleep(100 * time.Millisecond)

	res := testpeer.RunCaller(t, p.Addr, "live/late", testpeer.CallerOptions{})
	if len(res.Attempts) != 1 || !res.Attempts[0].Rejected || res.Attempts[0].Reason != 1402 {
		t.Errorf("new caller during the grace period: %v, want rejected with 1402", res.Attempts)
	} else if res.Attempts[0].Took > time.Second {
		t.Errorf("new caller during the grace period answered after %v", res.Attempts[0].Took)
	}

	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	time.Sleep(interopSettle)
	_ = live.Stop()
	interopCheckListener(t, origin, data)
	select {
	case <-done:
		t.Logf("caddy.Stop returned %v after it was called, once the last session ended", time.Since(stopped))
	case <-time.After(6 * time.Second):
		t.Fatal("caddy.Stop did not return after the grace period")
	}
}
