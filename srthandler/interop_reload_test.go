package srthandler_test

import (
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// A libsrt publisher at about 1000 packets per second and a libsrt player,
// both through the proxy, while the config is reloaded five times through
// the admin API (once without their route): one session each at the
// backend, no error on either side, every packet delivered in order.
func TestInteropStreamSurvivesReloads(t *testing.T) {
	testpeer.RequireTool(t, "srt-live-transmit")
	for _, path := range dataPaths {
		t.Run(path, func(t *testing.T) {
			b := startBackend(t, "b")
			other := startBackend(t, "other")
			cfg := func(resource, target string) map[string]any {
				return map[string]any{
					"data_path": path,
					"routes":    []any{map[string]any{"resource": []string{resource}, "to": to(target)}},
				}
			}
			p := testpeer.StartProxy(t, cfg("live/*", b.Addr()), testpeer.Options{Admin: true})

			sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			var mu sync.Mutex
			var got []uint32
			sinkDone := make(chan struct{})
			go func() {
				defer close(sinkDone)
				buf := make([]byte, 2048)
				for {
					n, err := sink.Read(buf)
					if err != nil {
						return
					}
					if n == 1316 {
						mu.Lock()
						got = append(got, binary.BigEndian.Uint32(buf))
						mu.Unlock()
					}
				}
			}()

			// What is tested is that no packet is lost across reloads, so
			// the peers get a latency budget that a loaded 2-core CI machine
			// (the race detector, other packages' tests) cannot exhaust:
			// at libsrt's 120 ms a scheduling stall drops late packets at
			// the player, with or without a proxy in between.
			slt := testpeer.SLTOptions{Latency: time.Second}
			player := testpeer.StartSLTPlayer(t, p.Addr, "#!::r=live/reload,m=request", sink.LocalAddr().String(), slt)
			waitFor(t, 5*time.Second, "the player at the backend", func() bool { return b.Live() == 1 })
			pub := testpeer.StartSLTCaller(t, p.Addr, "#!::r=live/reload,m=publish", slt)
			if !pub.Connected() {
				t.Fatalf("publisher did not connect:\n%s", pub.Stderr())
			}

			const packets = 3000
			reloaded := make(chan struct{})
			go func() {
				defer close(reloaded)
				for i, c := range []map[string]any{
					cfg("live/*", b.Addr()),
					cfg("elsewhere/*", other.Addr()),
					cfg("live/*", other.Addr()),
					cfg("*", b.Addr()),
					cfg("live/*", b.Addr()),
				} {
					time.Sleep(450 * time.Millisecond)
					if err := p.Reload(c); err != nil {
						t.Errorf("reload %d: %v", i+1, err)
					}
				}
			}()
			chunk := make([]byte, 1316)
			tick := time.NewTicker(time.Millisecond)
			for i := range packets {
				<-tick.C
				binary.BigEndian.PutUint32(chunk, uint32(i))
				if err := pub.Feed(chunk, 1316, 0); err != nil {
					t.Fatalf("feeding the publisher: %v", err)
				}
			}
			tick.Stop()
			<-reloaded
			waitFor(t, 5*time.Second, "the player to receive every packet", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) >= packets
			})
			mu.Lock()
			for i := range packets {
				if got[i] != uint32(i) {
					t.Fatalf("packet %d arrived as #%d", i, got[i])
				}
			}
			mu.Unlock()
			for _, peer := range []*testpeer.Process{pub.Process, player.Process} {
				if e := peer.Stderr(); strings.Contains(strings.ToLower(e), "error") || strings.Contains(e, "lost") {
					t.Errorf("%s reported trouble:\n%s", peer.Name, e)
				}
				if peer.Exited() {
					t.Errorf("%s exited during the reloads:\n%s", peer.Name, peer.Stderr())
				}
			}
			conns := b.Conns()
			if len(conns) != 2 || len(other.Conns()) != 0 {
				t.Errorf("backend saw %d sessions (other: %d), want the publisher's and the player's", len(conns), len(other.Conns()))
			}
			t.Logf("%s: %d packets in order through 5 reloads", path, packets)
		})
	}
}
