package srthandler_test

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
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

// A spoofed induction flood from 100 000 distinct source addresses and
// ports (127.0.0.0/8 gives them): the proxy answers each and holds
// nothing for any, so its goroutines and heap stay flat, and valid
// callers still connect during the flood.
func TestSpoofedInductionFlood(t *testing.T) {
	const sources = 100_000
	spoof := testpeer.NewSpoofer(t)
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{"routes": []any{map[string]any{"to": to(b.Addr())}}}, testpeer.Options{})
	proxy := netip.MustParseAddrPort(p.Addr)
	dial := func(what string) error {
		// gosrt never repeats a handshake packet, and a flood overflows
		// the listener's socket buffer: a valid caller gets attempts.
		var err error
		for range 5 {
			var c interface{ Close() error }
			if c, err = testpeer.Dial(p.Addr, "valid/"+what, testpeer.DialOptions{Timeout: time.Second}); err == nil {
				c.Close()
				return nil
			}
		}
		return err
	}
	if err := dial("before"); err != nil {
		t.Fatal(err)
	}
	heap := func(gc bool) uint64 {
		if gc {
			runtime.GC()
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	baseHeap, baseG := heap(true), runtime.NumGoroutine()
	baseDrops := peer.UDPDrops()

	var peakHeap, peakG atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if h := heap(false); h > peakHeap.Load() {
				peakHeap.Store(h)
			}
			if g := uint64(runtime.NumGoroutine()); g > peakG.Load() {
				peakG.Store(g)
			}
		}
	}()
	dialed := make(chan error, 1)
	flooding := make(chan struct{})
	go func() {
		<-flooding
		dialed <- dial("during")
	}()
	start := time.Now()
	// Paced, so that the flood reaches the proxy instead of overflowing
	// its socket buffer: 25 000 a second take a third of a core without
	// the race detector.
	floodRate, batch := 25_000, 100
	if raceDetector {
		floodRate, batch = 10_000, 50
	}
	pace := time.NewTicker(time.Second * time.Duration(batch) / time.Duration(floodRate))
	defer pace.Stop()
	for i := range sources {
		if i%batch == 0 {
			<-pace.C
		}
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 10 + byte(i>>16), byte(i >> 8), byte(i)}), uint16(20000+i%40000))
		pkt := wire.AppendInduction(nil, uint32(i+1), 1, 1500, 8192, [16]byte{}, 0)
		if err := spoof.Send(from, proxy, pkt); err != nil {
			t.Fatal(err)
		}
		if i == sources/10 {
			close(flooding)
		}
	}
	sent := time.Since(start)
	if err := <-dialed; err != nil {
		t.Errorf("valid caller during the flood: %v", err)
	}
	waitFor(t, 10*time.Second, "the handlers to let go", func() bool { return testpeer.OurGoroutines() == 0 })
	close(stop)
	wg.Wait()
	grownHeap := int64(peakHeap.Load()) - int64(baseHeap)
	grownG := int64(peakG.Load()) - int64(baseG)
	t.Logf("%d spoofed inductions in %v (%d dropped by the kernel: socket buffers full): peak +%d goroutines, peak heap +%d KiB",
		sources, sent.Round(time.Millisecond), peer.UDPDrops()-baseDrops, grownG, grownHeap>>10)
	// Before handlers let go of quiet callers (release.go), this flood
	// peaked at +40 000 goroutines and +680 MiB of heap; since, at +350
	// to +560 and +6 to +12 MiB.
	if grownG > 2000 {
		t.Errorf("goroutines grew by %d during the flood, want at most 2000", grownG)
	}
	if grownHeap > 32<<20 {
		t.Errorf("heap grew by %d KiB during the flood, want at most 32 MiB", grownHeap>>10)
	}
	if err := dial("after"); err != nil {
		t.Errorf("valid caller after the flood: %v", err)
	}
}
