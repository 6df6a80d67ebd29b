package srthandler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

func TestDeadUpstreamIsRejectedInTime(t *testing.T) {
	// One upstream port with nothing behind it (ICMP says so at once) and
	// one that swallows everything (only the timeout can tell).
	refused := fmt.Sprintf("127.0.0.1:%d", testpeer.FreeUDPPort(t))
	black := testpeer.NewRelay(t, refused)
	black.Pause()
	p := testpeer.StartProxy(t, map[string]any{
		"handshake_timeout": "1s",
		"routes": []any{
			map[string]any{"resource": []string{"refused"}, "to": to(refused)},
			map[string]any{"resource": []string{"silent"}, "to": to(black.Addr)},
		},
	}, testpeer.Options{})
	for _, c := range []struct {
		id  string
		max time.Duration
	}{
		{"refused", 500 * time.Millisecond},
		{"silent", 1500 * time.Millisecond},
	} {
		start := time.Now()
		_, err := testpeer.Dial(p.Addr, c.id, testpeer.DialOptions{})
		took := time.Since(start)
		got, ok := testpeer.RejectReason(err)
		if !ok || got != 1503 {
			t.Errorf("%s upstream: got %v, want rejection 1503 (down)", c.id, err)
		}
		if took > c.max {
			t.Errorf("%s upstream: rejection took %v, want under %v", c.id, took, c.max)
		}
	}
}
