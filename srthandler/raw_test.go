package srthandler_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// caddy-l4 v0.1.2 spins when a matcher Reads a first datagram over 2048
// bytes; the srt matcher must say "no match" at once, and the caller's
// next datagram must be served.
func TestOversizedFirstDatagram(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{"to": to(b.Addr())}},
	}, testpeer.Options{})
	for _, size := range []int{1501, 2048, 2049, 4000, 8999} {
		c := testpeer.NewRawCaller(t, p.Addr, 99)
		big := c.Induction()
		big = append(big, bytes.Repeat([]byte{0}, size-len(big))...)
		c.Send(big)
		if got := c.Recv(200 * time.Millisecond); got != nil {
			t.Errorf("%d bytes: proxy answered an oversized datagram", size)
		}
		// Had the matcher spun, this caller's association would be stuck
		// and this induction never answered (caddy-l4 gives up matching
		// after 3 s, so 2 s tells the two apart).
		c.Send(c.Induction())
		resp, err := wire.ParseHandshake(c.Recv(2 * time.Second))
		if err != nil || resp.Type != wire.HSInduction {
			t.Fatalf("%d bytes: the next induction from the same caller was not answered: %v", size, err)
		}
	}
}
