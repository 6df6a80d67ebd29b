package session

import (
	"testing"
	"time"
)

// feed drives a batcher the way the reactor does: each event is a
// wake-up at the given time after the previous one that found so many
// datagrams. It returns whether the batcher ticked after each.
func feed(b *batcher, now *time.Time, window time.Duration, every time.Duration, found, times int) (ticking []bool) {
	for range times {
		*now = now.Add(every)
		if b.ticking {
			b.ticked(*now, window, found)
		} else {
			b.woke(*now, window, found)
		}
		ticking = append(ticking, b.ticking)
	}
	return ticking
}

func last(v []bool) bool { return v[len(v)-1] }

// batchUp feeds wake-ups every gap, each serving served datagrams, until
// the batcher ticks.
func batchUp(t *testing.T, b *batcher, now *time.Time, window, gap time.Duration, served int) {
	t.Helper()
	for range 10 * batchPeriod * int(window/gap) {
		if last(feed(b, now, window, gap, served, 1)) {
			return
		}
	}
	t.Fatalf("not ticking after ten periods of wake-ups every %v", gap)
}

// gapFor is the gap between wake-ups that makes perWindow of them a window.
func gapFor(window time.Duration, perWindow float64) time.Duration {
	return time.Duration(float64(window) / perWindow)
}

func TestBatcher(t *testing.T) {
	const w = 2 * time.Millisecond
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, b *batcher, now *time.Time)
	}{
		{"a lone stream never batches", func(t *testing.T, b *batcher, now *time.Time) {
			// ~330 wake-ups a second, each with a few datagrams, and
			// now and then three close together (packet, ACK, ACKACK).
			for range 200 {
				feed(b, now, w, ms(0.05), 1, 3)
				if last(feed(b, now, w, ms(8.9), 3, 1)) {
					t.Fatal("ticking")
				}
			}
		}},
		{"busy traffic batches, and stays batched", func(t *testing.T, b *batcher, now *time.Time) {
			// Three wake-ups a window.
			got := feed(b, now, w, w/3, 1, 3*batchPeriod+3)
			if !last(got) {
				t.Fatal("not ticking after a period of busy traffic")
			}
			for i, on := range got[:3*batchPeriod-3] {
				if on {
					t.Fatalf("ticking after %d wake-ups, before a period had passed", i+1)
				}
			}
			// Each tick finds what used to wake it three times.
			for _, on := range feed(b, now, w, w, 3, 10*batchPeriod) {
				if !on {
					t.Fatal("stopped ticking while each tick found three datagrams")
				}
			}
		}},
		{"just under batchFactor wake-ups a window does not batch", func(t *testing.T, b *batcher, now *time.Time) {
			for _, on := range feed(b, now, w, gapFor(w, batchFactor/1.05), 1, 20*batchPeriod) {
				if on {
					t.Fatal("ticking")
				}
			}
		}},
		{"just over batchFactor wake-ups a window batches", func(t *testing.T, b *batcher, now *time.Time) {
			if !last(feed(b, now, w, gapFor(w, batchFactor*1.05), 1, 3*batchPeriod)) {
				t.Fatal("not ticking")
			}
		}},
		{"ticks that find too little end batching", func(t *testing.T, b *batcher, now *time.Time) {
			feed(b, now, w, w/4, 1, 5*batchPeriod)
			if !b.ticking {
				t.Fatal("not ticking")
			}
			got := feed(b, now, w, w, 1, batchPeriod+1)
			if last(got) {
				t.Fatal("still ticking after a period of ticks that found one datagram each")
			}
			// Back to listening, a datagram a window is not busy.
			for _, on := range feed(b, now, w, w, 1, 10*batchPeriod) {
				if on {
					t.Fatal("ticking again")
				}
			}
		}},
		{"ticks that replace too few wake-ups end batching", func(t *testing.T, b *batcher, now *time.Time) {
			// Listening, two wake-ups a window, three datagrams each.
			batchUp(t, b, now, w, w/2, 3)
			// A tick that finds four replaces one and a third.
			if last(feed(b, now, w, w, 4, batchPeriod+1)) {
				t.Fatal("still ticking after a period of ticks that each replaced 4/3 wake-ups")
			}
		}},
		{"ticks that replace enough wake-ups go on", func(t *testing.T, b *batcher, now *time.Time) {
			batchUp(t, b, now, w, w/2, 3)
			for _, on := range feed(b, now, w, w, 5, 10*batchPeriod) {
				if !on {
					t.Fatal("stopped ticking while each tick replaced 5/3 wake-ups")
				}
			}
		}},
		{"a period of empty ticks ends batching", func(t *testing.T, b *batcher, now *time.Time) {
			feed(b, now, w, w/4, 1, 5*batchPeriod)
			// A busy start to the period keeps its average up: only the
			// run of empty ticks can end it.
			feed(b, now, w, w, 40, 1)
			if !b.ticking {
				t.Fatal("not ticking")
			}
			got := feed(b, now, w, w, 0, batchPeriod)
			if !got[batchPeriod-2] || last(got) {
				t.Fatalf("ticking after %d and %d empty ticks: %v, %v; want true, false", batchPeriod-1, batchPeriod, got[batchPeriod-2], last(got))
			}
		}},
		{"empty ticks between clusters do not", func(t *testing.T, b *batcher, now *time.Time) {
			// Ten streams in step: every 10 ms a cluster of packets in
			// one tick, their ACKs in the next, then three empty ticks.
			feed(b, now, w, w/4, 1, 5*batchPeriod)
			for range 10 * batchPeriod {
				feed(b, now, w, w, 20, 1)
				feed(b, now, w, w, 10, 1)
				if !last(feed(b, now, w, w, 0, 3)) {
					t.Fatal("stopped ticking between clusters")
				}
			}
		}},
		{"a quiet spell is no period of its own", func(t *testing.T, b *batcher, now *time.Time) {
			// One wake-up after a long silence, then a few close
			// together: not busy, whatever the gaps between them.
			feed(b, now, w, time.Minute, 1, 1)
			if last(feed(b, now, w, ms(0.01), 1, 10)) {
				t.Fatal("ticking")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b batcher
			now := time.Unix(1_000_000, 0)
			tc.run(t, &b, &now)
		})
	}
}
