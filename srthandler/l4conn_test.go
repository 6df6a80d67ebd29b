package srthandler_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

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
