package loadharness

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// IdleResult is many sessions held open with no data, and what the
// proxy's memory did.
type IdleResult struct {
	Path        Path
	Wanted      int
	Connected   int
	AliveAtEnd  int // sessions whose two ends still heard each other after the hold
	RSSBefore   int64
	RSSAfter    int64
	ProxyCPU    time.Duration // during the hold
	Hold        time.Duration
	ConnectTime Durations
	Errors      map[string]int
}

// PerSessionKiB is the proxy's RSS growth per connected session.
func (r *IdleResult) PerSessionKiB() float64 {
	if r.Connected == 0 {
		return 0
	}
	return float64(r.RSSAfter-r.RSSBefore) / 1024 / float64(r.Connected)
}

// RunIdle opens n keepalive-only SRT sessions through path (at most 32
// handshakes at a time), holds them for hold, and reads the proxy's RSS
// before the first and after the hold.
func (e *Env) RunIdle(ctx context.Context, path Path, n int, hold time.Duration) (*IdleResult, error) {
	origin, t, stop, err := viaOrigin(ctx, e, path, StartKeepaliveOrigin)
	if err != nil {
		return nil, err
	}
	defer stop()
	res := &IdleResult{Path: path, Wanted: n, Hold: hold, Errors: map[string]int{}}
	before, err := t.Usage()
	if err != nil {
		return nil, err
	}
	res.RSSBefore = before.RSS
	callers := make([]*KeepaliveCaller, n)
	took := make([]time.Duration, n)
	defer func() {
		for _, c := range callers {
			if c != nil {
				c.Close()
			}
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range callers {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, d, err := DialKeepalive(t.Addr, fmt.Sprintf("load/idle-%d", i), 3*time.Second)
			if err != nil {
				mu.Lock()
				res.Errors[err.Error()]++
				mu.Unlock()
				return
			}
			callers[i], took[i] = c, d
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, c := range callers {
		if c != nil {
			res.Connected++
			res.ConnectTime = append(res.ConnectTime, took[i])
		}
	}
	mid, err := t.Usage()
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(hold):
	}
	after, err := t.Usage()
	if err != nil {
		return nil, err
	}
	res.RSSAfter, res.ProxyCPU = after.RSS, after.CPU-mid.CPU
	// Alive: both ends heard the other within the last two keepalives.
	const recent = 2*keepaliveInterval + keepaliveInterval/2
	callersHearing := 0
	for _, c := range callers {
		if c != nil && c.HeardWithin(recent) {
			callersHearing++
		}
	}
	res.AliveAtEnd = min(callersHearing, origin.HeardWithin(recent))
	return res, nil
}
