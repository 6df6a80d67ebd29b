package srthandler_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// SHUTDOWNs forged from the caller's address (to the proxy's port) and
// from the origin's address (to the proxy's upstream port), addressed to
// any socket but the session's: the sessions live and lose no packet.
func TestForgedShutdownsEndNothing(t *testing.T) {
	spoof := testpeer.NewSpoofer(t)
	for _, path := range dataPaths {
		t.Run(path, func(t *testing.T) {
			b := startBackend(t, "b")
			p := testpeer.StartProxy(t, map[string]any{
				"data_path": path,
				"routes":    []any{map[string]any{"to": to(b.Addr())}},
			}, testpeer.Options{Admin: true})
			proxy := netip.MustParseAddrPort(p.Addr)
			before := session.DroppedControl()[session.DropSocketID]
			forged := 0
			sent, got := streamThroughReloads(t, p.Addr, 600, func() {
				waitFor(t, 5*time.Second, "publisher and player sessions", func() bool { return session.Default.Len() == 2 })
				for round := range 10 {
					for _, s := range session.Default.Sessions() {
						upstream := netip.MustParseAddrPort(s.UpstreamAddr)
						ours := s.Upstream.LocalAddr().(*net.UDPAddr).AddrPort()
						ours = netip.AddrPortFrom(upstream.Addr(), ours.Port())
						ts := uint32(round)
						for _, id := range []uint32{0, s.CallerSocket, s.UpstreamSocket + 1, 0xffffffff} {
							if err := spoof.Send(s.Caller, proxy, wire.AppendShutdown(nil, id, ts)); err != nil {
								t.Error(err)
								return
							}
							forged++
						}
						for _, id := range []uint32{0, s.UpstreamSocket, s.CallerSocket + 1, 0xffffffff} {
							if err := spoof.Send(upstream, ours, wire.AppendShutdown(nil, id, ts)); err != nil {
								t.Error(err)
								return
							}
							forged++
						}
					}
					time.Sleep(20 * time.Millisecond)
				}
				if n := session.Default.Len(); n != 2 {
					t.Errorf("after %d forged SHUTDOWNs: %d sessions live, want 2", forged, n)
				}
			})
			if len(got) != len(sent) {
				t.Errorf("player got %d of %d packets", len(got), len(sent))
			}
			if d := session.DroppedControl()[session.DropSocketID] - before; d < uint64(forged) {
				t.Errorf("dropped %d control packets for their socket ID, want at least the %d forged", d, forged)
			}
			if m := metric(t, p, "caddy_layer4_srt_dropped_control_total", `reason="socket_id"`); m < float64(forged) {
				t.Errorf("dropped_control_total{reason=socket_id} = %v, want at least %d", m, forged)
			}
		})
	}
}
