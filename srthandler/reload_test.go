package srthandler_test

import (
	"encoding/binary"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// streamThroughReloads publishes numbered packets at about 1000 per second
// through the proxy to a backend and plays them back through the proxy,
// while reload() runs; it returns what the player received, in order.
func streamThroughReloads(t *testing.T, proxy string, packets int, reload func()) (sent, got []uint32) {
	t.Helper()
	pub, err := testpeer.Dial(proxy, "#!::r=live/reload,m=publish", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	play, err := testpeer.Dial(proxy, "#!::r=live/reload,m=request", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer play.Close()

	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, err := play.Read(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				mu.Lock()
				got = append(got, binary.BigEndian.Uint32(buf))
				mu.Unlock()
			}
		}
	}()
	// Give the player's subscription a moment before the first packet.
	time.Sleep(50 * time.Millisecond)

	reloaded := make(chan struct{})
	go func() { defer close(reloaded); reload() }()
	msg := make([]byte, 1316)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := range packets {
		<-tick.C
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := pub.Write(msg); err != nil {
			t.Fatalf("publisher write %d: %v", i, err)
		}
		sent = append(sent, uint32(i))
	}
	<-reloaded
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(sent) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	play.Close()
	<-done
	return sent, got
}

// Live sessions keep flowing through any number of config reloads,
// including one that removes the route they came in by.
func TestSessionsSurviveReloads(t *testing.T) {
	for _, path := range dataPaths {
		t.Run(path, func(t *testing.T) {
			b := startBackend(t, "b")
			other := startBackend(t, "other")
			cfg := func(resource string, target *struct{ addr string }) map[string]any {
				return map[string]any{
					"data_path": path,
					"routes": []any{
						map[string]any{"resource": []string{resource}, "to": to(target.addr)},
					},
				}
			}
			main := &struct{ addr string }{b.Addr()}
			alt := &struct{ addr string }{other.Addr()}
			p := testpeer.StartProxy(t, cfg("live/*", main), testpeer.Options{Admin: true})

			// SRT_SOAK_RELOADS=N runs a longer soak: N reloads, 250 ms apart.
			reloads, packets, gap := 5, 3000, 400*time.Millisecond
			if n, err := strconv.Atoi(os.Getenv("SRT_SOAK_RELOADS")); err == nil && n > 0 {
				reloads, gap = n, 250*time.Millisecond
				packets = int(time.Duration(n+2)*gap/time.Millisecond) + 1000
			}
			sent, got := streamThroughReloads(t, p.Addr, packets, func() {
				configs := []map[string]any{
					cfg("live/*", main),
					cfg("elsewhere/*", alt), // the session's route is gone
					cfg("live/*", alt),      // new callers of this stream would go elsewhere
					cfg("*", main),
					cfg("live/*", main),
				}
				for i := range reloads {
					time.Sleep(gap)
					if err := p.Reload(configs[i%len(configs)]); err != nil {
						t.Errorf("reload %d: %v", i+1, err)
					}
				}
			})
			if len(got) != len(sent) {
				t.Errorf("player received %d of %d packets through %d reloads", len(got), len(sent), reloads)
			}
			for i := range min(len(got), len(sent)) {
				if got[i] != sent[i] {
					t.Errorf("packet %d: got #%d", i, got[i])
					break
				}
			}
			var pubs, plays int
			for _, c := range b.Conns() {
				if c.Mode == "publish" {
					pubs++
				} else {
					plays++
				}
			}
			if pubs != 1 || plays != 1 {
				t.Errorf("backend saw %d publisher and %d player sessions, want one each", pubs, plays)
			}
			if n := len(other.Conns()); n != 0 {
				t.Errorf("the other backend got %d connections", n)
			}
			t.Logf("%s: %d packets through %d reloads", path, len(got), reloads)
		})
	}
}
