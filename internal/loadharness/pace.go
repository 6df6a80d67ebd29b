package loadharness

import (
	"context"
	"time"
)

// Pace calls send(seq) for seq = 0, 1, 2, ... at pps packets per second
// for d, starting after offset. A late wake-up sends the packets that fell
// due at once, so the average rate holds. It returns how many send calls
// succeeded and the first error.
func Pace(ctx context.Context, pps float64, d, offset time.Duration, send func(seq uint64) error) (uint64, error) {
	interval := time.Duration(float64(time.Second) / pps)
	start := time.Now().Add(offset)
	n := uint64(d / interval)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for seq := uint64(0); seq < n; seq++ {
		due := start.Add(time.Duration(seq) * interval)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return seq, ctx.Err()
			case <-timer.C:
			}
		}
		if err := send(seq); err != nil {
			return seq, err
		}
	}
	return n, nil
}

// PacketsPerSecond is the packet rate that carries bitsPerSecond of
// PayloadSize payloads.
func PacketsPerSecond(bitsPerSecond float64) float64 {
	return bitsPerSecond / (PayloadSize * 8)
}
