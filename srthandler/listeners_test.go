package srthandler_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// TestOneCallerAddressTwoListeners: one caller address (libsrt
// multiplexing two connections on one port) holds a session on each of
// two listeners; neither is taken for the other's.
func TestOneCallerAddressTwoListeners(t *testing.T) {
	for _, path := range []string{"socket", "listener"} {
		t.Run(path, func(t *testing.T) {
			b := startBackend(t, "gosrt")
			second := "127.0.0.1:" + strconv.Itoa(testpeer.FreeUDPPort(t))
			p := testpeer.StartProxy(t, map[string]any{
				"data_path": path,
				"routes":    []any{map[string]any{"to": to(b.Addr())}},
			}, testpeer.Options{MoreListen: []string{second}})

			one := testpeer.NewRawCallerFrom(t, "127.0.0.1:0", p.Addr, 0x101)
			if hs, err := wire.ParseHandshake(one.Handshake(5, "live/one", time.Second)); err != nil || hs.Type != wire.HSConclusion {
				t.Fatalf("first listener: no conclusion response (%v)", err)
			}
			two := testpeer.NewRawCallerFrom(t, one.Conn.LocalAddr().String(), second, 0x202)
			resp := two.Handshake(5, "live/two", time.Second)
			if hs, err := wire.ParseHandshake(resp); err != nil || hs.Type != wire.HSConclusion {
				t.Fatalf("second listener, same caller address: %x (%v), want its own session", resp, err)
			}
			waitFor(t, 3*time.Second, "two sessions", func() bool { return session.Default.Len() == 2 })
		})
	}
}
