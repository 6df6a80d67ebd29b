package loadharness

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// ConnectResult is a series of connects, one after the other, by one kind
// of caller.
type ConnectResult struct {
	Path     Path
	Kind     PeerKind
	Times    Durations // of the connects that succeeded
	Failures int
}

// connectWarmup connects are made first and not counted: the first
// handshakes of a fresh process pay for lazy set-up.
const connectWarmup = 3

// RunConnects connects n callers of kind through path one after the
// other, closing each right away.
func (e *Env) RunConnects(ctx context.Context, path Path, kind PeerKind, n int) (*ConnectResult, error) {
	_, t, stop, err := viaOrigin(ctx, e, path, StartOrigin)
	if err != nil {
		return nil, err
	}
	defer stop()
	res := &ConnectResult{Path: path, Kind: kind}
	switch kind {
	case Gosrt:
		for i := -connectWarmup; i < n && ctx.Err() == nil; i++ {
			c, took, err := DialGosrt(t.Addr, fmt.Sprintf("load/connect-%d", i), 3*time.Second)
			if i < 0 {
				if c != nil {
					c.Close()
				}
				continue
			}
			if err != nil {
				res.Failures++
				continue
			}
			res.Times = append(res.Times, took)
			c.Close()
		}
	case Libsrt:
		if err := e.runCaller(ctx, t, n, res); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown caller kind %q", kind)
	}
	return res, ctx.Err()
}

// runCaller runs the C caller with --repeat n; it prints one line per
// attempt: CONNECTED <µs>, REJECTED <reason> <µs> or FAILED <why>.
func (e *Env) runCaller(ctx context.Context, t *Target, n int, res *ConnectResult) error {
	host, port, err := net.SplitHostPort(t.Addr)
	if err != nil {
		return err
	}
	p, err := e.Procs.Start("srtcaller", e.CallerBin, host, port, "load/connect-libsrt", "--repeat", strconv.Itoa(n+connectWarmup))
	if err != nil {
		return err
	}
	limit := time.Duration(n+connectWarmup)*3*time.Second + 10*time.Second
	for exited := false; !exited; {
		if ctx.Err() != nil {
			p.Stop()
			return ctx.Err()
		}
		exited, _ = p.Wait(100 * time.Millisecond)
		if limit -= 100 * time.Millisecond; limit < 0 {
			p.Stop()
			return fmt.Errorf("srtcaller did not finish; see %s", p.Log)
		}
	}
	attempts, err := readCallerLog(p.Log)
	if err != nil {
		return err
	}
	if len(attempts) != n+connectWarmup {
		return fmt.Errorf("srtcaller reported %d attempts of %d; see %s", len(attempts), n+connectWarmup, p.Log)
	}
	for _, a := range attempts[connectWarmup:] {
		if a.connected {
			res.Times = append(res.Times, a.took)
		} else {
			res.Failures++
		}
	}
	return nil
}
