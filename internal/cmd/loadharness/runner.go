package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	lh "github.com/srtroute/caddy-l4-srt/internal/loadharness"
)

// runner runs the chosen scenarios, each on every path with a fresh origin
// and a fresh proxy, and prints a table per scenario as it completes.
type runner struct {
	env     *lh.Env
	cfg     *config
	summary summary
}

func (r *runner) all(ctx context.Context) error {
	start := time.Now()
	fmt.Printf("caddy-l4-srt load harness — %s, %d CPUs, load average %s\n", time.Now().Format(time.RFC3339), runtime.NumCPU(), loadAverage())
	fmt.Printf("proxy: %s (separate process; CPU = utime+stime from /proc, RSS = VmRSS), origin: gosrt listener in the harness\n", r.cfg.caddy)
	fmt.Printf("plugin config: catch-all route to the origin, max_pending = max_pending_per_ip = %d, Caddy log level %s\n", r.cfg.maxPending, r.cfg.logLevel)
	if r.cfg.scenarios["single"] {
		for _, k := range r.cfg.singleKinds {
			l := lh.StreamLoad{Kind: k, Streams: 1, Mbps: r.cfg.singleMbps, Duration: r.cfg.singleFor, Profile: "single-" + string(k)}
			if err := r.streams(ctx, "single stream", l); err != nil {
				return err
			}
		}
	}
	if r.cfg.scenarios["concurrent"] {
		for _, sc := range r.cfg.concurrent {
			l := lh.StreamLoad{Kind: r.cfg.concurrentKind, Streams: sc.n, Mbps: sc.mbps, Duration: r.cfg.concurrentFor}
			if err := r.streams(ctx, "concurrent streams", l); err != nil {
				return err
			}
		}
	}
	if r.cfg.scenarios["connect"] {
		if err := r.connects(ctx); err != nil {
			return err
		}
	}
	if r.cfg.scenarios["idle"] {
		if err := r.idle(ctx); err != nil {
			return err
		}
	}
	if r.cfg.scenarios["storm"] {
		if err := r.storm(ctx); err != nil {
			return err
		}
	}
	r.summary.print(os.Stdout)
	fmt.Printf("\nfinished in %v, load average %s; logs and configs in %s\n", time.Since(start).Round(time.Second), loadAverage(), r.cfg.logs)
	return nil
}

// onEachPath runs fn on every path in turn.
func (r *runner) onEachPath(ctx context.Context, what string, fn func(p lh.Path) error) error {
	for _, p := range r.cfg.paths {
		fmt.Fprintf(os.Stderr, "… %s via %s\n", what, p)
		if err := fn(p); err != nil {
			return fmt.Errorf("%s via %s: %w", what, p, err)
		}
	}
	return nil
}

// streams runs a stream load on every path, rounds times over: the
// proxies' CPU figures drift with whatever else the machine does, and
// rounds back to back compare paths under the same drift.
func (r *runner) streams(ctx context.Context, title string, l lh.StreamLoad) error {
	var rounds [][]*lh.StreamResult
	for round := range max(r.cfg.rounds, 1) {
		heading := title
		if r.cfg.rounds > 1 {
			heading = fmt.Sprintf("%s, round %d of %d", title, round+1, r.cfg.rounds)
		}
		var results []*lh.StreamResult
		err := r.onEachPath(ctx, l.String(), func(p lh.Path) error {
			res, err := r.env.RunStreams(ctx, p, l)
			if err == nil {
				results = append(results, res)
			}
			return err
		})
		if err != nil {
			return err
		}
		printStreams(os.Stdout, heading, l, results)
		rounds = append(rounds, results)
	}
	r.summary.addStreams(l, rounds)
	return nil
}

func (r *runner) connects(ctx context.Context) error {
	for _, kind := range []lh.PeerKind{lh.Gosrt, lh.Libsrt} {
		var results []*lh.ConnectResult
		err := r.onEachPath(ctx, fmt.Sprintf("%d sequential %s connects", r.cfg.connects, kind), func(p lh.Path) error {
			res, err := r.env.RunConnects(ctx, p, kind, r.cfg.connects)
			if err == nil {
				results = append(results, res)
			}
			return err
		})
		if err != nil {
			return err
		}
		printConnects(os.Stdout, kind, r.cfg.connects, results)
		r.summary.addConnects(kind, results)
	}
	return nil
}

func (r *runner) idle(ctx context.Context) error {
	var results []*lh.IdleResult
	err := r.onEachPath(ctx, fmt.Sprintf("%d idle sessions", r.cfg.idle), func(p lh.Path) error {
		res, err := r.env.RunIdle(ctx, p, r.cfg.idle, r.cfg.idleHold)
		if err == nil {
			results = append(results, res)
		}
		return err
	})
	if err != nil {
		return err
	}
	printIdle(os.Stdout, r.cfg.idle, r.cfg.idleHold, results)
	r.summary.addIdle(results)
	return nil
}

func (r *runner) storm(ctx context.Context) error {
	for _, kind := range r.cfg.stormKinds {
		workers := r.cfg.stormWorkers
		if kind == lh.Libsrt {
			workers = r.cfg.stormProcs
		}
		var results []*lh.StormResult
		err := r.onEachPath(ctx, fmt.Sprintf("%s handshake storm", kind), func(p lh.Path) error {
			res, err := r.env.RunStorm(ctx, p, kind, workers, r.cfg.stormFor)
			if err == nil {
				results = append(results, res)
			}
			return err
		})
		if err != nil {
			return err
		}
		printStorm(os.Stdout, kind, workers, r.cfg.stormFor, results)
		r.summary.addStorm(kind, results)
	}
	return nil
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "?"
	}
	return string(b[:14])
}
