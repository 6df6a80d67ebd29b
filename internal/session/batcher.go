package session

import "time"

// batcher decides when the reactor trades listening to its sockets for
// a look at them once a batch window (see reactor.loop). A tick costs
// about what a wake-up by datagrams costs, so it pays only where it
// replaces more than one: batching starts when datagrams woke the
// reactor batchFactor times a window or more, and goes on while each
// tick replaces batchFactor wake-ups or more. What a tick replaces is
// what it found divided by the datagrams a wake-up served while the
// reactor last listened: listening, one wake-up often serves several
// (a burst, a packet and its ACK), and a tick that finds no more than a
// wake-up would have saves nothing. A lone 10 Mbit/s libsrt stream
// shows it: listening, a wake-up serves three datagrams; a 2 ms tick
// finds two or three, and ticking cost more than listening.
//
// Both are averages over batchPeriod windows, not gaps between single
// wake-ups: a lone stream's packet, its ACK and the ACKACK arrive close
// together every few milliseconds, and judged by such gaps a stream that
// wakes the reactor a few hundred times a second looked busy, ticked 500
// times a second instead, and paid more than it saved.
type batcher struct {
	ticking bool
	start   time.Time // of the period being counted
	wakes   int       // wake-ups by datagrams in the period, while listening
	served  int       // datagrams those wake-ups read
	perWake float64   // datagrams a wake-up read in the last listening period
	ticks   int       // ticks in the period
	found   int       // datagrams the ticks found in the period
	empty   int       // ticks in a row that found nothing
}

const (
	// batchFactor is how many wake-ups one tick must replace, on
	// average. A tick costs about a wake-up and a system call more:
	// BenchmarkRelayPaced's even stream, about a wake-up a millisecond,
	// costs half as much ticking every 2 ms.
	batchFactor = 1.5
	// batchPeriod is how many windows the averages span: several of
	// SRT's 10 ms control cycles at the default window.
	batchPeriod = 16
)

// woke counts a wake-up by datagrams, while listening, that read n of
// them, and reports whether to start ticking every window.
func (b *batcher) woke(now time.Time, window time.Duration, n int) bool {
	if b.start.IsZero() {
		b.restart(now)
	}
	b.wakes++
	b.served += n
	elapsed := now.Sub(b.start)
	if elapsed < batchPeriod*window {
		return false
	}
	b.perWake = max(1, float64(b.served)/float64(b.wakes))
	busy := float64(b.wakes)*float64(window) >= batchFactor*float64(elapsed)
	b.restart(now)
	if busy {
		b.ticking = true
	}
	return busy
}

// ticked counts a tick that found n datagrams, and reports whether to go
// on ticking. A period of ticks in a row that find nothing ends batching
// whatever the average: the traffic has stopped. Fewer empty ticks do
// not. Streams started together keep in step, and their packets, ACKs
// and ACKACKs arrive in clusters every 10 ms with empty ticks between:
// ending at two empty ticks stopped batching for such traffic several
// times a second, and 10 gosrt streams spent nine wake-ups in ten
// listening (make load).
func (b *batcher) ticked(now time.Time, window time.Duration, n int) bool {
	b.ticks++
	b.found += n
	if b.empty++; n > 0 {
		b.empty = 0
	}
	if b.empty >= batchPeriod {
		b.stop(now)
		return false
	}
	if now.Sub(b.start) < batchPeriod*window {
		return true
	}
	if float64(b.found) < batchFactor*max(1, b.perWake)*float64(b.ticks) {
		b.stop(now)
		return false
	}
	b.restart(now)
	return true
}

// stop goes back to listening, for whatever reason the reactor has.
func (b *batcher) stop(now time.Time) {
	b.ticking, b.empty = false, 0
	b.restart(now)
}

// restart begins a new period. A run of empty ticks goes on across it.
func (b *batcher) restart(now time.Time) {
	b.start, b.wakes, b.served, b.ticks, b.found = now, 0, 0, 0, 0
}
