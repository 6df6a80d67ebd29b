// Command loadharness sends the same SRT traffic along several paths —
// straight to the origin, through caddy-l4's proxy handler, through this
// plugin — and prints, per path, the proxy's CPU per GB relayed, what
// reached the origin, the peers' retransmissions, the proxy's memory,
// connect times, idle-session memory and handshake rate, with the
// plugin's figures as ratios to the others and the targets
// beside them. It measures; it fails only when the harness itself fails.
//
//	loadharness -caddy .demo/caddy -srtcaller .demo/srtcaller
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	lh "github.com/srtroute/caddy-l4-srt/internal/loadharness"
)

// streamCount is one concurrent-streams run: how many, how fast each.
type streamCount struct {
	n    int
	mbps float64
}

type config struct {
	caddy, slt, caller, logs, profile, logLevel string
	paths                                       []lh.Path
	scenarios                                   map[string]bool
	singleKinds                                 []lh.PeerKind
	singleMbps                                  float64
	singleFor                                   time.Duration
	concurrent                                  []streamCount
	concurrentKind                              lh.PeerKind
	concurrentFor                               time.Duration
	connects                                    int
	idle                                        int
	idleHold                                    time.Duration
	stormKinds                                  []lh.PeerKind
	stormWorkers                                int
	stormProcs                                  int
	stormFor                                    time.Duration
	maxPending                                  int
	rounds                                      int
}

var allScenarios = []string{"single", "concurrent", "connect", "idle", "storm"}

func main() {
	var c config
	var paths, scenarios, kinds, concurrent, concurrentKind, stormKinds string
	flag.StringVar(&c.caddy, "caddy", ".demo/caddy", "Caddy built with caddy-l4 and this plugin (make build)")
	flag.StringVar(&c.slt, "slt", "srt-live-transmit", "srt-live-transmit, for the libsrt publishers")
	flag.StringVar(&c.caller, "srtcaller", ".demo/srtcaller", "the C caller built from internal/testpeer/libsrt/srtcaller.c")
	flag.StringVar(&c.logs, "logs", ".demo/load", "where configs and process logs go (a directory per run)")
	flag.StringVar(&c.profile, "profile", "", "directory for CPU profiles of the proxy during the single-stream runs (off when empty)")
	flag.StringVar(&c.logLevel, "log-level", "WARN", "Caddy's log level")
	flag.StringVar(&paths, "paths", "direct,l4proxy,srt,srt-unbatched,srt-listener", "paths to compare")
	flag.StringVar(&scenarios, "scenarios", strings.Join(allScenarios, ","), "scenarios to run")
	flag.StringVar(&kinds, "single-kinds", "libsrt,gosrt", "publishers of the single-stream runs")
	flag.Float64Var(&c.singleMbps, "single-mbps", 10, "single stream: rate, Mbit/s")
	flag.DurationVar(&c.singleFor, "single-for", 20*time.Second, "single stream: how long")
	flag.StringVar(&concurrent, "concurrent", "10@2,100@1,100@2", "concurrent streams: runs of N@Mbit/s per stream (100@1 leaves the machine room to measure CPU; at 100@2 it is short of CPU, and what counts is delivery)")
	flag.StringVar(&concurrentKind, "concurrent-kind", "gosrt", "concurrent streams: publisher kind")
	flag.DurationVar(&c.concurrentFor, "concurrent-for", 10*time.Second, "concurrent streams: how long")
	flag.IntVar(&c.connects, "connects", 100, "connect times: sequential connects per caller kind")
	flag.IntVar(&c.idle, "idle", 1000, "idle sessions held at once")
	flag.DurationVar(&c.idleHold, "idle-hold", 5*time.Second, "how long the idle sessions are held")
	flag.StringVar(&stormKinds, "storm-kinds", "gosrt", "handshake storm: caller kinds, one storm each (libsrt: the C callers themselves saturate 2 CPUs near 150/s)")
	flag.IntVar(&c.stormWorkers, "storm-workers", 48, "handshake storm: parallel gosrt callers")
	flag.IntVar(&c.stormProcs, "storm-procs", 16, "handshake storm: parallel C caller processes (libsrt)")
	flag.DurationVar(&c.stormFor, "storm-for", 10*time.Second, "handshake storm: how long")
	flag.IntVar(&c.rounds, "rounds", 1, "stream scenarios: rounds over every path, back to back; targets use the median round")
	flag.IntVar(&c.maxPending, "max-pending", 4096, "the plugin's max_pending and max_pending_per_ip (all callers share 127.0.0.1)")
	flag.Parse()

	if err := parseLists(&c, paths, scenarios, kinds, concurrent, concurrentKind, stormKinds); err != nil {
		fmt.Fprintln(os.Stderr, "loadharness:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &c); err != nil {
		fmt.Fprintln(os.Stderr, "loadharness failed:", err)
		os.Exit(1)
	}
}

// needsLibsrt says whether the run starts srt-live-transmit or the C caller.
func (c *config) needsLibsrt() (slt, caller bool) {
	for _, k := range c.singleKinds {
		slt = slt || (c.scenarios["single"] && k == lh.Libsrt)
	}
	slt = slt || (c.scenarios["concurrent"] && c.concurrentKind == lh.Libsrt)
	caller = c.scenarios["connect"]
	for _, k := range c.stormKinds {
		caller = caller || (c.scenarios["storm"] && k == lh.Libsrt)
	}
	return slt, caller
}

func run(ctx context.Context, c *config) error {
	// Each run keeps its configs and logs in a directory of its own.
	c.logs = filepath.Join(c.logs, time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(c.logs, 0o755); err != nil {
		return err
	}
	env := &lh.Env{
		Procs:      &lh.Procs{Dir: c.logs},
		Proxy:      lh.ProxyOptions{LogLevel: c.logLevel, MaxPending: c.maxPending},
		ProfileDir: c.profile,
	}
	defer env.Procs.StopAll()
	var err error
	if env.CaddyBin, err = filepath.Abs(c.caddy); err != nil {
		return err
	}
	if _, err := os.Stat(env.CaddyBin); err != nil {
		return fmt.Errorf("caddy binary: %w (run make build)", err)
	}
	needSLT, needCaller := c.needsLibsrt()
	if needSLT {
		if env.SLTBin, err = exec.LookPath(c.slt); err != nil {
			return fmt.Errorf("libsrt publishers need srt-live-transmit (apt-get install srt-tools): %w", err)
		}
	}
	if needCaller {
		if env.CallerBin, err = filepath.Abs(c.caller); err == nil {
			_, err = os.Stat(env.CallerBin)
		}
		if err != nil {
			return fmt.Errorf("the C caller: %w (make load builds it; needs gcc and libsrt-gnutls-dev)", err)
		}
	}
	if c.profile != "" {
		if err := os.MkdirAll(c.profile, 0o755); err != nil {
			return err
		}
	}
	r := &runner{env: env, cfg: c}
	return r.all(ctx)
}
