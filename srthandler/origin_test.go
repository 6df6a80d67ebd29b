package srthandler_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// feedUntilExit feeds a srt-live-transmit caller a packet a millisecond
// until it exits or stop is set.
func feedUntilExit(c *testpeer.SLTCaller, stop *atomic.Bool) {
	chunk := interopPayload(1)
	for !stop.Load() && !c.Exited() {
		if err := c.Feed(chunk, 1316, time.Millisecond); err != nil {
			return
		}
	}
}

// TestOriginGone: an origin killed mid-stream (no SHUTDOWN from it, only
// the kernel's "connection refused") ends the session both ways within a
// second: the libsrt caller's sending fails, and a caller that reconnects
// at once goes on through the other origin.
func TestOriginGone(t *testing.T) {
	for _, path := range []string{"socket", "listener"} {
		t.Run(path, func(t *testing.T) { testOriginGone(t, path) })
	}
}

func testOriginGone(t *testing.T, dataPath string) {
	first := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
	second := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
	p := testpeer.StartProxy(t, map[string]any{
		"data_path": dataPath,
		"routes":    []any{map[string]any{"to": to(first.Addr, second.Addr), "lb_policy": "first"}},
	}, testpeer.Options{})

	c := testpeer.StartSLTCaller(t, p.Addr, "live/gone", testpeer.SLTOptions{})
	if !c.Connected() {
		t.Fatalf("caller did not connect; stderr:\n%s", c.Stderr())
	}
	var stop atomic.Bool
	defer stop.Store(true)
	go feedUntilExit(c, &stop)
	waitFor(t, 5*time.Second, "the first origin to receive data", func() bool { return len(first.Received()) > 0 || first.Accepted() })
	time.Sleep(300 * time.Millisecond)

	killed := time.Now()
	first.Kill()
	if exited, _ := c.Wait(3 * time.Second); !exited {
		t.Fatalf("caller still running %v after its origin was killed; stderr:\n%s", time.Since(killed), c.Stderr())
	}
	took := time.Since(killed)
	t.Logf("caller's connection ended %v after its origin was killed", took)
	if took > time.Second {
		t.Errorf("caller learned of the dead origin after %v, want within 1s", took)
	}
	stop.Store(true)

	again := testpeer.StartSLTCaller(t, p.Addr, "live/gone", testpeer.SLTOptions{})
	if !again.Connected() {
		t.Fatalf("reconnecting caller did not connect; stderr:\n%s", again.Stderr())
	}
	data := interopPayload(100)
	if err := again.Feed(data, 1316, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the second origin to take the stream", second.Accepted)
	time.Sleep(interopSettle)
	_ = again.Stop()
	interopCheckListener(t, second, data)
}
