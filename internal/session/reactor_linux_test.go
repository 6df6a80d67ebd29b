package session

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// reactorLoops counts the reactor goroutines running: the loop's own
// frame, once a goroutine, not the closures it runs.
func reactorLoops() int {
	// The whole dump: one cut short can leave out the loop.
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), "session.(*reactor).loop(")
}

// reactorTicks counts the batch timer's wake-ups of every reactor.
func reactorTicks() uint64 {
	_, ticks := RelayWakeups()
	return ticks
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type relayEnds struct {
	caller, upstream *net.UDPConn
	s                *Session
}

func startRelayed(t *testing.T, reg *Registry, substitute uint32, window time.Duration) relayEnds {
	t.Helper()
	return startRelayedBuffered(t, reg, substitute, window, 0)
}

// startRelayedBuffered is startRelayed with readBuffer bytes of receive
// buffer, when not 0, on the sockets the relay reads and the far
// upstream end: for tests that queue many datagrams at once.
func startRelayedBuffered(t *testing.T, reg *Registry, substitute uint32, window time.Duration, readBuffer int) relayEnds {
	t.Helper()
	callerEnd, link := pipe(t)
	upstreamEnd, up := pipe(t)
	if readBuffer > 0 {
		for _, c := range []*net.UDPConn{link, up, upstreamEnd} {
			if err := c.SetReadBuffer(readBuffer); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := New(Config{
		Caller:           netip.MustParseAddrPort(callerEnd.LocalAddr().String()),
		CallerSocket:     0x1111,
		Upstream:         up,
		UpstreamAddr:     upstreamEnd.LocalAddr().String(),
		UpstreamSocket:   0x2222,
		SubstituteSocket: substitute,
		IdleTimeout:      time.Minute,
		BatchWindow:      window,
	})
	if err := s.Start(reg, link, PathSocket); err != nil {
		t.Fatal(err)
	}
	if s.pair == nil {
		t.Fatal("the fast path did not go to a reactor")
	}
	t.Cleanup(func() {
		callerEnd.Close()
		upstreamEnd.Close()
	})
	return relayEnds{callerEnd, upstreamEnd, s}
}

func readDatagram(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("reading from %s: %v", c.LocalAddr(), err)
	}
	return buf[:n]
}

// Many sessions share a reactor: every datagram reaches the right far end
// byte for byte (readdressed where the upstream knows the caller by a
// substitute socket ID), SHUTDOWN from either side ends only its own
// session, and when the last session is gone the reactor's goroutine,
// epoll sets, timerfd and eventfd are gone too. All of it with each
// datagram relayed as it comes, and with the reactor batching.
func TestReactorRelaysManySessions(t *testing.T) {
	t.Run("unbatched", func(t *testing.T) { testReactorRelaysManySessions(t, 0) })
	t.Run("batched", func(t *testing.T) { testReactorRelaysManySessions(t, 2*time.Millisecond) })
}

func testReactorRelaysManySessions(t *testing.T, window time.Duration) {
	// A reactor may still be on its way out after an earlier test.
	waitFor(t, "earlier reactor loops to stop", func() bool { return reactorLoops() == 0 })
	fdsBefore := openFDs(t)
	ticksBefore := reactorTicks()
	reg := NewRegistry()
	const n = 40
	ends := make([]relayEnds, n)
	for i := range ends {
		sub := uint32(0)
		if i%2 == 1 {
			sub = 0x3333
		}
		ends[i] = startRelayed(t, reg, sub, window)
	}
	// A loop goroutine that has not run yet is not in a stack dump.
	want := reactorsFor(runtime.GOMAXPROCS(0))
	waitFor(t, "the reactor loops to start", func() bool { return reactorLoops() >= want })
	if loops := reactorLoops(); loops != want {
		t.Fatalf("%d reactor loops for %d sessions, want %d", loops, n, want)
	}

	for round := range 20 {
		for i, e := range ends {
			data := append(wire.Header{Seq: uint32(round), DestSocket: 0x2222}.Append(nil), byte(i), byte(round))
			if _, err := e.caller.Write(data); err != nil {
				t.Fatal(err)
			}
			dest := uint32(0x1111)
			if i%2 == 1 {
				dest = 0x3333
			}
			back := append(wire.Header{Seq: uint32(round), DestSocket: dest}.Append(nil), byte(i), byte(round), 'u')
			if _, err := e.upstream.Write(back); err != nil {
				t.Fatal(err)
			}
		}
		for i, e := range ends {
			want := append(wire.Header{Seq: uint32(round), DestSocket: 0x2222}.Append(nil), byte(i), byte(round))
			if got := readDatagram(t, e.upstream); !bytes.Equal(got, want) {
				t.Fatalf("session %d round %d: upstream got %x, want %x", i, round, got, want)
			}
			want = append(wire.Header{Seq: uint32(round), DestSocket: 0x1111}.Append(nil), byte(i), byte(round), 'u')
			if got := readDatagram(t, e.caller); !bytes.Equal(got, want) {
				t.Fatalf("session %d round %d: caller got %x, want %x", i, round, got, want)
			}
		}
	}
	// Whether 80 datagrams a round keep the reactor busy enough to batch
	// depends on the machine (see TestReactorBatchesWhileBusy); with
	// batching off it must never have ticked.
	if ticked := reactorTicks() - ticksBefore; window == 0 && ticked > 0 {
		t.Fatalf("the reactor ticked %d times with batching off", ticked)
	}

	for i, e := range ends {
		switch i % 3 {
		case 0:
			_, _ = e.caller.Write(wire.AppendShutdown(nil, 0x2222, 1))
		case 1:
			dest := uint32(0x1111)
			if e.s.SubstituteSocket != 0 {
				dest = e.s.SubstituteSocket
			}
			_, _ = e.upstream.Write(wire.AppendShutdown(nil, dest, 1))
		default:
			e.s.Kick()
		}
	}
	for i, e := range ends {
		e.s.Wait()
		reason, _ := e.s.Reason()
		want := []EndReason{EndCallerShutdown, EndUpstreamShutdown, EndKicked}[i%3]
		if reason != want {
			t.Errorf("session %d ended for %q, want %q", i, reason, want)
		}
		// Whoever did not send the SHUTDOWN receives one.
		if i%3 != 0 {
			if got := readDatagram(t, e.caller); !wire.IsControl(got) || wire.ControlTypeOf(got) != wire.CtrlShutdown || wire.DestSocketOf(got) != 0x1111 {
				t.Errorf("session %d: caller got %x, want a SHUTDOWN to 0x1111", i, got)
			}
		}
		if i%3 != 1 {
			if got := readDatagram(t, e.upstream); !wire.IsControl(got) || wire.ControlTypeOf(got) != wire.CtrlShutdown || wire.DestSocketOf(got) != 0x2222 {
				t.Errorf("session %d: upstream got %x, want a SHUTDOWN to 0x2222", i, got)
			}
		}
	}
	if _, live := reg.Totals(); live != 0 {
		t.Fatalf("%d sessions still registered", live)
	}
	waitFor(t, "the reactor loops to stop", func() bool { return reactorLoops() == 0 })
	for _, e := range ends {
		e.caller.Close()
		e.upstream.Close()
	}
	waitFor(t, "descriptors to close", func() bool { return openFDs(t) <= fdsBefore })
}

// While datagrams keep a reactor busy it batches, and once they stop it
// goes back to listening: no tick without traffic. Every datagram still
// arrives, in order.
func TestReactorBatchesWhileBusy(t *testing.T) {
	waitFor(t, "earlier reactor loops to stop", func() bool { return reactorLoops() == 0 })
	const window = 2 * time.Millisecond
	reg := NewRegistry()
	ends := make([]relayEnds, 8)
	for i := range ends {
		ends[i] = startRelayed(t, reg, 0, window)
	}
	ticksBefore := reactorTicks()
	deadline := time.Now().Add(10 * time.Second)
	// Rounds of a datagram to every session, each round read at the far
	// ends before the next: a datagram per socket at a time, never a
	// flood (which would stop batching), and nothing left queued.
	for seq := uint32(0); reactorTicks() == ticksBefore; seq++ {
		if time.Now().After(deadline) {
			t.Fatal("the reactor never batched under traffic from 8 sessions")
		}
		for i, e := range ends {
			data := append(wire.Header{Seq: seq, DestSocket: 0x2222}.Append(nil), byte(i))
			if _, err := e.caller.Write(data); err != nil {
				t.Fatal(err)
			}
		}
		for i, e := range ends {
			want := append(wire.Header{Seq: seq, DestSocket: 0x2222}.Append(nil), byte(i))
			if got := readDatagram(t, e.upstream); !bytes.Equal(got, want) {
				t.Fatalf("session %d: upstream got %x, want %x", i, got, want)
			}
		}
	}
	// A period of empty ticks ends batching (see batcher); a machine
	// too busy to tick on time may take longer, never forever.
	waitFor(t, "the reactor to stop ticking without traffic", func() bool {
		before := reactorTicks()
		time.Sleep(2 * batchPeriod * window)
		return reactorTicks() == before
	})
	for _, e := range ends {
		e.s.Kick()
		e.s.Wait()
	}
	waitFor(t, "the reactor loops to stop", func() bool { return reactorLoops() == 0 })
}

// A reactor batches with the smallest window among its sessions: none
// while one of them asked for none.
func TestReactorTakesTheSmallestWindow(t *testing.T) {
	r := &reactor{windows: map[time.Duration]int{}}
	ms := time.Millisecond
	for _, step := range []struct {
		w     time.Duration
		delta int
		want  time.Duration
	}{
		{2 * ms, 1, 2 * ms},
		{5 * ms, 1, 2 * ms},
		{0, 1, 0},
		{2 * ms, 1, 0},
		{0, -1, 2 * ms},
		{2 * ms, -1, 2 * ms},
		{2 * ms, -1, 5 * ms},
		{-1, 1, 0}, // off
		{-1, -1, 5 * ms},
		{5 * ms, -1, 0},
	} {
		r.countWindow(step.w, step.delta)
		if r.window != step.want {
			t.Fatalf("after %+d session with window %v: window %v, want %v", step.delta, step.w, r.window, step.want)
		}
	}
	if len(r.windows) != 0 {
		t.Fatalf("windows left: %v", r.windows)
	}
}

// End may come at any moment of Start: before the reactor has the
// session, while it registers it, or after. Every session must finish and
// leave no descriptor behind.
func TestReactorEndRacesStart(t *testing.T) {
	fdsBefore := openFDs(t)
	reg := NewRegistry()
	for i := range 300 {
		callerEnd, link := pipe(t)
		upstreamEnd, up := pipe(t)
		s := New(Config{
			Caller:      netip.MustParseAddrPort(callerEnd.LocalAddr().String()),
			Upstream:    up,
			IdleTimeout: time.Minute,
		})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for reg.Lookup(s.Key()) == nil && !s.ended() {
				runtime.Gosched()
			}
			s.Kick()
		}()
		if err := s.Start(reg, link, PathSocket); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		waitFinished(t, s, i)
		callerEnd.Close()
		upstreamEnd.Close()
	}
	waitFor(t, "the reactor loops to stop", func() bool { return reactorLoops() == 0 })
	waitFor(t, "descriptors to close", func() bool { return openFDs(t) <= fdsBefore })
}

// holdReactors keeps the running reactors' loops from relaying until the
// returned func is called: woken, each loop waits for its mu before it
// looks at the set again, and datagrams sent meanwhile are all queued
// when it does.
func holdReactors(t *testing.T) (release func()) {
	t.Helper()
	var held []*reactor
	for _, r := range allReactors() {
		r.mu.Lock()
		if !r.running {
			r.mu.Unlock()
			continue
		}
		r.wake()
		held = append(held, r)
	}
	time.Sleep(20 * time.Millisecond) // for the loops to reach apply
	return func() {
		for _, r := range held {
			r.mu.Unlock()
		}
	}
}

// A look at the set that leaves work behind (more ready sockets than one
// epoll_pwait returns, or a socket holding more than pumpRounds batches)
// looks again before waiting: the set is level-triggered, and nothing new
// would wake the loop for what is already queued.
func TestReactorLeavesNothingQueued(t *testing.T) {
	waitFor(t, "earlier reactor loops to stop", func() bool { return reactorLoops() == 0 })
	data := func(seq uint32) []byte { return wire.Header{Seq: seq, DestSocket: 0x2222}.Append(nil) }

	t.Run("more ready sockets than a look returns", func(t *testing.T) {
		reg := NewRegistry()
		ends := make([]relayEnds, len(allReactors())*(eventsPerLook+40))
		for i := range ends {
			ends[i] = startRelayed(t, reg, 0, 0)
		}
		release := holdReactors(t)
		for i, e := range ends {
			if _, err := e.caller.Write(data(uint32(i))); err != nil {
				release()
				t.Fatal(err)
			}
		}
		release()
		for i, e := range ends {
			if got := readDatagram(t, e.upstream); !bytes.Equal(got, data(uint32(i))) {
				t.Fatalf("session %d: got %x", i, got)
			}
		}
		for _, e := range ends {
			e.s.Kick()
			e.s.Wait()
		}
	})

	t.Run("more datagrams on one socket than a wake-up takes", func(t *testing.T) {
		e := startRelayedBuffered(t, NewRegistry(), 0, 0, 4<<20)
		defer func() { e.s.Kick(); e.s.Wait() }()
		const count = 3*pumpRounds*batchSize + 10
		release := holdReactors(t)
		for i := range count {
			if _, err := e.caller.Write(data(uint32(i))); err != nil {
				release()
				t.Fatal(err)
			}
		}
		release()
		for i := range count {
			if got := readDatagram(t, e.upstream); !bytes.Equal(got, data(uint32(i))) {
				t.Fatalf("datagram %d: got %x", i, got)
			}
		}
	})
}
