package loadharness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// StormResult is workers connecting and closing callers as fast as they
// can for a while.
type StormResult struct {
	Path      Path
	Kind      PeerKind
	Workers   int
	Attempts  int
	Failures  int
	Elapsed   time.Duration // until the last attempt finished
	Times     Durations     // connect times of the successes
	ProxyCPU  time.Duration
	PeakRSS   int64
	Errors    map[string]int // failure texts, counted
	Delivered int64          // connections the origin accepted
	UDPDrops  int64          // receive-buffer drops in the whole machine meanwhile
	// MachineIdle is the percent of the machine's CPU left idle meanwhile.
	MachineIdle float64
}

// PerSecond is the rate of successful handshakes.
func (r *StormResult) PerSecond() float64 {
	return float64(len(r.Times)) / r.Elapsed.Seconds()
}

// FailurePercent is the share of attempts that did not connect.
func (r *StormResult) FailurePercent() float64 {
	if r.Attempts == 0 {
		return 0
	}
	return 100 * float64(r.Failures) / float64(r.Attempts)
}

// stormAttempts is how many connects each C caller process is told to
// make; it is stopped at the end of the storm long before that.
const stormAttempts = 100000

// RunStorm runs workers callers of kind in a loop for d: connect, close,
// again. A gosrt caller sends each handshake packet once and gives up
// after 3 s; a libsrt caller (the C caller, one process per worker)
// repeats them every 250 ms.
func (e *Env) RunStorm(ctx context.Context, path Path, kind PeerKind, workers int, d time.Duration) (*StormResult, error) {
	origin, t, stop, err := viaOrigin(ctx, e, path, StartOrigin)
	if err != nil {
		return nil, err
	}
	defer stop()
	res := &StormResult{Path: path, Kind: kind, Workers: workers, Errors: map[string]int{}}
	before, err := t.Usage()
	if err != nil {
		return nil, err
	}
	drops, machine := peer.UDPDrops(), ReadMachineCPU()
	start := time.Now()
	switch kind {
	case Gosrt:
		stormGosrt(ctx, t.Addr, res, workers, start.Add(d))
	case Libsrt:
		err = e.stormLibsrt(ctx, t.Addr, res, workers, d)
	default:
		err = fmt.Errorf("unknown caller kind %q", kind)
	}
	if res.Elapsed == 0 {
		res.Elapsed = time.Since(start)
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	after, err := t.Usage()
	if err != nil {
		return nil, err
	}
	res.ProxyCPU, res.PeakRSS = after.CPU-before.CPU, after.HWM
	res.Delivered = origin.Accepted()
	res.UDPDrops = peer.UDPDrops() - drops
	res.MachineIdle = ReadMachineCPU().IdlePercentSince(machine)
	return res, nil
}

func stormGosrt(ctx context.Context, addr string, res *StormResult, workers int, end time.Time) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				c, took, err := DialGosrt(addr, fmt.Sprintf("load/storm-%d-%d", w, i), 3*time.Second)
				mu.Lock()
				res.record(took, err)
				mu.Unlock()
				if c != nil {
					c.Close()
				}
			}
		}()
	}
	wg.Wait()
}

// stormLibsrt runs one C caller process per worker and stops them all
// after d; an attempt cut short by the stop is not counted.
func (e *Env) stormLibsrt(ctx context.Context, addr string, res *StormResult, workers int, d time.Duration) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	procs := make([]*Proc, 0, workers)
	defer func() {
		for _, p := range procs {
			p.Stop()
		}
	}()
	for w := 0; w < workers; w++ {
		p, err := e.Procs.Start("srtcaller-storm", e.CallerBin, host, port, fmt.Sprintf("load/storm-%d", w),
			"--repeat", strconv.Itoa(stormAttempts))
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	res.Elapsed = d // what ran past d is not counted
	stopAll(procs)
	for _, p := range procs {
		attempts, err := readCallerLog(p.Log)
		if err != nil {
			return err
		}
		for _, a := range attempts {
			var err error
			if !a.connected {
				err = errors.New(a.failure)
			}
			res.record(a.took, err)
		}
	}
	return nil
}

func (r *StormResult) record(took time.Duration, err error) {
	r.Attempts++
	if err != nil {
		r.Failures++
		r.Errors[err.Error()]++
		return
	}
	r.Times = append(r.Times, took)
}
