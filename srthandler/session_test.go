package srthandler_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// 200 sessions, ended every way a session ends, leave nothing behind.
func TestSessionsLeakNothing(t *testing.T) {
	for _, path := range dataPaths {
		t.Run(path, func(t *testing.T) {
			b := startBackend(t, "b")
			relay := testpeer.NewRelay(t, b.Addr())
			p := testpeer.StartProxy(t, map[string]any{
				"data_path":    path,
				"idle_timeout": "1s",
				"routes": []any{
					map[string]any{"resource": []string{"idle/*"}, "to": to(relay.Addr)},
					map[string]any{"to": to(b.Addr())},
				},
			}, testpeer.Options{})

			warm, err := testpeer.Dial(p.Addr, "warmup", testpeer.DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			warm.Close()
			settle(t, 1<<30)
			sockets := testpeer.OpenSockets(t)

			// 80 ended by the caller's SHUTDOWN.
			for i := range 80 {
				c, err := testpeer.Dial(p.Addr, fmt.Sprintf("#!::r=caller/%d,m=publish", i), testpeer.DialOptions{})
				if err != nil {
					t.Fatal(err)
				}
				c.Write(make([]byte, 1316))
				c.Close()
			}
			// 80 ended by the upstream's SHUTDOWN, in batches: gosrt peers
			// ACK every 10 ms, and 160 of them at once starve a 2-core
			// machine under the race detector.
			for batch := range 4 {
				var conns []interface{ Close() error }
				for i := range 20 {
					c, err := testpeer.Dial(p.Addr, fmt.Sprintf("#!::r=upstream/%d-%d,m=publish", batch, i), testpeer.DialOptions{})
					if err != nil {
						t.Fatal(err)
					}
					conns = append(conns, c)
				}
				waitFor(t, 5*time.Second, "20 live upstream-side connections", func() bool { return b.Live() >= 20 })
				b.Hangup()
				waitFor(t, 5*time.Second, "the upstream to end its sessions", func() bool { return session.Default.Len() == 0 })
				for _, c := range conns {
					c.Close()
				}
			}
			// 40 that go silent both ways and end by idle timeout. Their
			// sockets stay open meanwhile: a closed one's port could be
			// reused by the next caller while its session still lives.
			var raws []*testpeer.RawCaller
			for i := range 40 {
				c := testpeer.NewRawCaller(t, p.Addr, uint32(1000+i))
				resp, err := wire.ParseHandshake(c.Handshake(5, fmt.Sprintf("idle/%d", i), 2*time.Second))
				if err != nil || resp.Type != wire.HSConclusion {
					t.Fatalf("idle caller %d: no conclusion response: %v", i, err)
				}
				raws = append(raws, c)
			}
			relay.Pause()
			// The relay's sockets are the test's own, not the proxy's.
			relay.Close()
			waitFor(t, 5*time.Second, "the idle sessions to time out", func() bool { return session.Default.Len() == 0 })
			for _, c := range raws {
				c.Conn.Close()
			}
			settle(t, sockets)
		})
	}
}

// Callers that keep sending after their sessions ended (they have not seen
// the SHUTDOWN yet) must not stall the listener for everyone else. On the
// listener path each ended session's handler has to read on until its
// caller is quiet: caddy-l4 v0.1.2's server loop blocks for good on a
// connection nobody reads, and with more than ten handlers ending at once
// its close notifications queue up behind it.
func TestCallersStillSendingAfterTheEnd(t *testing.T) {
	for _, path := range dataPaths {
		t.Run(path, func(t *testing.T) {
			b := startBackend(t, "b")
			p := testpeer.StartProxy(t, map[string]any{
				"data_path": path,
				"routes":    []any{map[string]any{"to": to(b.Addr())}},
			}, testpeer.Options{})
			const callers = 24
			raws := make([]*testpeer.RawCaller, callers)
			upstream := make([]uint32, callers)
			for i := range raws {
				raws[i] = testpeer.NewRawCaller(t, p.Addr, uint32(2000+i))
				resp, err := wire.ParseHandshake(raws[i].Handshake(5, fmt.Sprintf("talker/%d", i), 2*time.Second))
				if err != nil || resp.Type != wire.HSConclusion {
					t.Fatalf("caller %d: no conclusion response: %v", i, err)
				}
				upstream[i] = resp.SocketID
			}
			waitFor(t, 5*time.Second, "every caller at the backend", func() bool { return b.Live() >= callers })
			// Every caller keeps sending across the end of its session, as
			// a sender that has not seen the SHUTDOWN yet does.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i, c := range raws {
				wg.Add(1)
				go func() {
					defer wg.Done()
					keepalive := wire.Header{Control: true, Type: wire.CtrlKeepalive, DestSocket: upstream[i]}.Append(nil)
					tick := time.NewTicker(5 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							_, _ = c.Conn.Write(keepalive)
						}
					}
				}()
			}
			time.Sleep(100 * time.Millisecond)
			b.Hangup()
			time.Sleep(300 * time.Millisecond)
			close(stop)
			wg.Wait()
			waitFor(t, 5*time.Second, "the sessions to end", func() bool { return session.Default.Len() == 0 })
			// The listener still serves a new caller at once.
			fresh, err := testpeer.Dial(p.Addr, "fresh", testpeer.DialOptions{})
			if err != nil {
				t.Fatalf("a new caller after the burst: %v", err)
			}
			fresh.Close()
			settle(t, 1<<30)
		})
	}
}
