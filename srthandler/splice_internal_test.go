package srthandler

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// The session count pick takes on the first candidate is given back even
// when the handshake budget ran out before that candidate was tried.
func TestSpliceReleasesUntriedCandidate(t *testing.T) {
	h := &Handler{HandshakeTimeout: caddy.Duration(time.Millisecond)}
	up := &upstreamState{addr: "127.0.0.1:1"}
	up.acquire()
	c := &callerHello{received: time.Now().Add(-time.Second)}
	if _, err := h.splice(c, []*upstreamState{up}, zap.NewNop()); err == nil {
		t.Fatal("splice after its deadline succeeded")
	}
	if n := up.sessions.Load(); n != 0 {
		t.Fatalf("session count %d after a splice that never tried", n)
	}
}
