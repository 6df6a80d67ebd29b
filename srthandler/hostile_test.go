package srthandler_test

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// cpuTime is the CPU time this process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// answer classifies what the proxy sent back.
func answer(b []byte) string {
	if b == nil {
		return "nothing"
	}
	if wire.IsShutdown(b) {
		return "shutdown"
	}
	hs, err := wire.ParseHandshake(b)
	switch {
	case err != nil:
		return fmt.Sprintf("non-handshake %x", b)
	case hs.Type == wire.HSInduction:
		return "induction"
	case hs.Type.IsRejection():
		return fmt.Sprintf("reject %d", hs.Type.Reason())
	}
	return "handshake " + hs.Type.String()
}

func withCookie(c *testpeer.RawCaller) uint32 {
	c.Send(c.Induction())
	hs, _ := wire.ParseHandshake(c.Recv(time.Second))
	return hs.Cookie
}

// Every malformed or unwelcome shape gets no panic, no upstream traffic,
// and, where the sender could be a real SRT caller, a proper answer.
func TestMalformedShapes(t *testing.T) {
	b := startBackend(t, "b")
	relay := testpeer.NewRelay(t, b.Addr())     // where stray traffic would show
	liveRelay := testpeer.NewRelay(t, b.Addr()) // the one live session's path
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			map[string]any{"resource": []string{"session/*"}, "to": to(liveRelay.Addr)},
			map[string]any{"resource": []string{"live/*"}, "to": to(relay.Addr)},
		},
	}, testpeer.Options{})

	// A live session, for the shapes aimed at its address.
	live := testpeer.NewRawCaller(t, p.Addr, 4242)
	resp := live.Handshake(5, "session/x", time.Second)
	if got := answer(resp); got != "handshake conclusion" {
		t.Fatalf("live session: %s", got)
	}
	liveHS, _ := wire.ParseHandshake(resp)

	bigSID := string(bytes.Repeat([]byte("x"), 516))
	shapes := []struct {
		name string
		send func(c *testpeer.RawCaller)
		want string
	}{
		{"truncated header", func(c *testpeer.RawCaller) { c.Send(c.Induction()[:10]) }, "nothing"},
		{"truncated CIF", func(c *testpeer.RawCaller) { c.Send(c.Induction()[:40]) }, "nothing"},
		{"conclusion before any induction", func(c *testpeer.RawCaller) { c.Send(c.Conclusion(5, 0, "live/x")) }, "nothing"},
		{"forged cookie", func(c *testpeer.RawCaller) { c.Send(c.Conclusion(5, 0x12345678, "live/x")) }, "nothing"},
		{"extension length past the datagram", func(c *testpeer.RawCaller) {
			conc := c.Conclusion(5, withCookie(c), "live/x")
			conc[len(conc)-(len("live/x")+3)/4*4-2] = 0xff // SID block: length 0xff.. words
			c.Send(conc)
		}, "reject 1400"},
		{"zero-length stream ID", func(c *testpeer.RawCaller) {
			conc := c.Conclusion(5, withCookie(c), "")
			conc = wire.AppendExtension(conc, wire.ExtSID, nil)
			c.Send(conc)
		}, "reject 1404"},
		{"stream ID over 512 bytes", func(c *testpeer.RawCaller) { c.Send(c.Conclusion(5, withCookie(c), bigSID)) }, "reject 1400"},
		{"repeated inductions", func(c *testpeer.RawCaller) {
			for range 5 {
				c.Send(c.Induction())
				if got := answer(c.Recv(time.Second)); got != "induction" {
					t.Errorf("repeated induction: %s", got)
				}
			}
			c.Send(c.Induction())
		}, "induction"},
		{"rendezvous waveahand", func(c *testpeer.RawCaller) {
			w := c.Induction()
			copy(w[36:40], []byte{0, 0, 0, 0})
			w[19] = 5 // HSv5 rendezvous
			c.Send(w)
		}, "reject 1501"},
		{"HSv4 conclusion without a catch-all route", func(c *testpeer.RawCaller) { c.Send(c.Conclusion(4, withCookie(c), "")) }, "shutdown"},
		{"version 6 induction", func(c *testpeer.RawCaller) {
			w := c.Induction()
			w[19] = 6
			c.Send(w)
		}, "nothing"},
		{"unknown control type", func(c *testpeer.RawCaller) {
			c.Send(wire.Header{Control: true, Type: 0x1234}.Append(make([]byte, 0, 64)))
		}, "nothing"},
		{"data packet to socket 0", func(c *testpeer.RawCaller) {
			c.Send(append(wire.Header{Seq: 1}.Append(nil), make([]byte, 188)...))
		}, "nothing"},
		{"over 1500 bytes", func(c *testpeer.RawCaller) { c.Send(append(c.Induction(), make([]byte, 1600)...)) }, "nothing"},
		{"over 2048 bytes", func(c *testpeer.RawCaller) { c.Send(append(c.Induction(), make([]byte, 3000)...)) }, "nothing"},
	}
	for _, s := range shapes {
		t.Run(s.name, func(t *testing.T) {
			c := testpeer.NewRawCaller(t, p.Addr, 777)
			s.send(c)
			if got := answer(c.Recv(300 * time.Millisecond)); got != s.want {
				t.Errorf("got %s, want %s", got, s.want)
			}
		})
	}
	// Shapes aimed at the live session's address: another caller socket
	// there is refused (the live caller ignores what is addressed to
	// another socket), and the session goes on.
	for _, typ := range []string{"induction", "conclusion"} {
		newcomer := live.As(999)
		if typ == "induction" {
			newcomer.Send(newcomer.Induction())
		} else {
			newcomer.Send(newcomer.Conclusion(5, 1, "live/x"))
		}
		for {
			got := live.Recv(300 * time.Millisecond)
			if got == nil {
				t.Errorf("new socket's %s on a live address: no answer", typ)
				break
			}
			if wire.DestSocketOf(got) == 999 {
				if a := answer(got); a != "reject 1409" {
					t.Errorf("new socket's %s on a live address: %s, want reject 1409", typ, a)
				}
				break
			}
			// The backend's own traffic to the live caller (ACKs,
			// keepalives) passes by meanwhile.
		}
	}
	if session.Default.Len() != 1 {
		t.Errorf("%d sessions live, want the one", session.Default.Len())
	}
	if n := relay.Seen(); n != 0 {
		t.Errorf("%d datagrams reached the backend", n)
	}

	// Idle: nothing spins. The live session is ended first, so only the
	// handlers still waiting out their senders remain, and they sleep.
	live.Send(wire.AppendShutdown(nil, liveHS.SocketID, 0))
	waitFor(t, 2*time.Second, "the live session to end", func() bool { return session.Default.Len() == 0 })
	before := cpuTime(t)
	time.Sleep(2 * time.Second)
	if used := cpuTime(t) - before; used > 300*time.Millisecond {
		t.Errorf("the idle proxy used %v of CPU in 2 s", used)
	}
	conn, err := testpeer.Dial(p.Addr, "live/real", testpeer.DialOptions{})
	if err != nil {
		t.Fatalf("a valid caller after the malformed shapes: %v", err)
	}
	conn.Close()
}

// Floods from many source ports: forged conclusions, inductions, and
// bursts of datagrams that are not SRT at all. Memory stays flat, nothing
// reaches a backend, and valid callers keep connecting.
func TestFloods(t *testing.T) {
	b := startBackend(t, "b")
	relay := testpeer.NewRelay(t, b.Addr())
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			map[string]any{"resource": []string{"live/*"}, "to": to(relay.Addr)},
			map[string]any{"resource": []string{"valid/*"}, "to": to(b.Addr())},
		},
	}, testpeer.Options{})
	ra, err := net.ResolveUDPAddr("udp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	dialValid := func(what string) {
		t.Helper()
		// A flood overflows the listener's socket buffer, and gosrt never
		// resends a handshake packet (libsrt does, every 250 ms): a lost
		// induction costs a gosrt caller its attempt, so it gets five (a
		// slow run, race detector on beside other packages, took more than
		// three seconds to drain one flood's 10,000 datagrams).
		var err error
		for range 5 {
			var c interface{ Close() error }
			if c, err = testpeer.Dial(p.Addr, "valid/"+what, testpeer.DialOptions{Timeout: time.Second}); err == nil {
				c.Close()
				return
			}
		}
		t.Fatalf("valid caller %s: %v", what, err)
	}
	dialValid("before")
	baseHeap := heap()

	raw := testpeer.NewRawCaller(t, p.Addr, 1)
	floods := []struct {
		name string
		pkt  []byte
	}{
		{"forged conclusions", raw.Conclusion(5, 0xbadc0de, "live/flood")},
		{"inductions", raw.Induction()},
		{"garbage", []byte("not srt at all")},
		{"MPEG-TS over plain UDP", bytes.Repeat([]byte{0x47, 0x1f, 0xff, 0x10}, 1316/4)},
		{"oversized", make([]byte, 4000)},
	}
	for _, f := range floods {
		// 10 000 datagrams: 100 source ports, a burst of 100 from each.
		var socks []*net.UDPConn
		for range 100 {
			c, err := net.DialUDP("udp", nil, ra)
			if err != nil {
				t.Fatal(err)
			}
			socks = append(socks, c)
		}
		var wg sync.WaitGroup
		for _, c := range socks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 100 {
					_, _ = c.Write(f.pkt)
				}
			}()
		}
		wg.Wait()
		dialValid("during " + f.name)
		for _, c := range socks {
			c.Close()
		}
	}
	if n := relay.Seen(); n != 0 {
		t.Errorf("floods sent %d datagrams towards the backend", n)
	}
	// Handlers wait out their senders (two quiet seconds), then let go.
	waitFor(t, 10*time.Second, "the handlers to let go", func() bool { return testpeer.OurGoroutines() == 0 })
	if grown := int64(heap()) - int64(baseHeap); grown > 8<<20 {
		t.Errorf("heap grew by %d KiB over the floods", grown>>10)
	}
	dialValid("after")
}

// caddy-l4 reports an empty datagram as io.EOF; a handler that took that
// for the end of its connection would stop draining its sender, and a
// burst behind it would hang the listener for every caller.
func TestEmptyDatagramsDoNotStopTheDrain(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{"routes": []any{map[string]any{"to": to(b.Addr())}}}, testpeer.Options{})
	c := testpeer.NewRawCaller(t, p.Addr, 31)
	c.Send(c.Induction())
	for range 200 {
		c.Send(nil)
	}
	for range 50 {
		c.Send(c.Induction())
	}
	conn, err := testpeer.Dial(p.Addr, "live/after-empties", testpeer.DialOptions{})
	if err != nil {
		t.Fatalf("a caller after a burst of empty datagrams: %v", err)
	}
	conn.Close()
}

// An empty datagram as a new sender's first: caddy-l4 v0.1.2's matching
// reads it as the end of the connection and lets go of the sender with
// the rest of its burst still queued, and its listener stops for every
// caller. The srt matcher claims such a sender, so the handler drains it.
func TestEmptyFirstDatagrams(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{"routes": []any{map[string]any{"to": to(b.Addr())}}}, testpeer.Options{})
	ra, err := net.ResolveUDPAddr("udp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		c, err := net.DialUDP("udp", nil, ra)
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			_, _ = c.Write(nil)
		}
		c.Close()
	}
	// gosrt sends each handshake packet once, and the burst may still
	// fill the listener's socket buffer: a few attempts, as TestFloods
	// gives. A stopped listener answers none.
	for attempt := range 5 {
		conn, err := testpeer.Dial(p.Addr, "live/after-empty-firsts", testpeer.DialOptions{Timeout: time.Second})
		if err == nil {
			conn.Close()
			return
		}
		t.Logf("attempt %d: %v", attempt+1, err)
	}
	t.Fatal("no caller gets through after senders whose first datagrams were empty")
}
