package srthandler_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

func TestPublishThenPlay(t *testing.T) {
	for _, path := range dataPaths {
		t.Run(path, func(t *testing.T) { testPublishThenPlay(t, path) })
	}
}

func testPublishThenPlay(t *testing.T, dataPath string) {
	b1 := startBackend(t, "b1")
	b2 := startBackend(t, "b2")
	p := testpeer.StartProxy(t, map[string]any{
		"data_path": dataPath,
		"routes":    []any{map[string]any{"to": to(b1.Addr(), b2.Addr())}},
	}, testpeer.Options{})

	pub, err := testpeer.Dial(p.Addr, "#!::r=live/show,m=publish", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	play, err := testpeer.Dial(p.Addr, "#!::r=live/show,m=request", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer play.Close()

	// stream_hash must have put both on the same backend (which records a
	// connection just after answering it).
	waitFor(t, 2*time.Second, "both connections at the backends", func() bool {
		return len(b1.Conns())+len(b2.Conns()) == 2
	})
	if n1, n2 := len(b1.Conns()), len(b2.Conns()); !(n1 == 2 && n2 == 0 || n1 == 0 && n2 == 2) {
		t.Fatalf("publisher and player split across backends: %d and %d connections", n1, n2)
	}

	got := make(chan []byte, 100)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := play.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	var sent [][]byte
	for i := range 20 {
		msg := bytes.Repeat([]byte{byte(i)}, 188*7)
		sent = append(sent, msg)
		if _, err := pub.Write(msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var recv [][]byte
	timeout := time.After(5 * time.Second)
	for len(recv) < len(sent) {
		select {
		case m, ok := <-got:
			if !ok {
				t.Fatalf("player closed after %d messages", len(recv))
			}
			recv = append(recv, m)
		case <-timeout:
			t.Fatalf("player got %d of %d messages", len(recv), len(sent))
		}
	}
	for i := range sent {
		if !bytes.Equal(sent[i], recv[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
}

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
