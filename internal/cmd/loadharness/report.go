package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	lh "github.com/srtroute/caddy-l4-srt/internal/loadharness"
)

// The targets.
const (
	targetCPUPerGB   = 0.35 // × caddy-l4's proxy
	targetConnect    = 1.5  // × direct, median
	targetHandshakes = 1000 // per second
	targetFailures   = 1.0  // percent of storm attempts
	targetIdleKiB    = 32   // per idle session
)

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func lost(r *lh.StreamResult) uint64 {
	if u := r.Unique(); u < r.Sent {
		return r.Sent - u
	}
	return 0
}

func cpuPerGB(r *lh.StreamResult) float64 {
	if r.GB() == 0 {
		return 0
	}
	return r.ProxyCPU.Seconds() / r.GB()
}

func findPath[T any](rs []T, path lh.Path, pathOf func(T) lh.Path) (T, bool) {
	for _, r := range rs {
		if pathOf(r) == path {
			return r, true
		}
	}
	var zero T
	return zero, false
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func printStreams(w io.Writer, title string, l lh.StreamLoad, rs []*lh.StreamResult) {
	fmt.Fprintf(w, "\n== %s: %v (%.3f GB sent per path)\n", title, l, gbOf(rs))
	tw := newTable(w)
	fmt.Fprintln(tw, "PATH\tCONNECTED\tSENT pkts\tDELIVERED\tLOST\tLATE\tRETRANS\tRECV-LOSS\tUDP DROPS\tIDLE\tPROXY CPU s\tCPU s/GB\tPKTS/WAKE\tRSS MiB\tPEAK MiB")
	for _, r := range rs {
		cpu, perGB, perWake, rss, peak := "-", "-", "-", "-", "-"
		if r.Path != lh.Direct {
			cpu, perGB, rss, peak = fmt.Sprintf("%.2f", r.ProxyCPU.Seconds()), fmt.Sprintf("%.2f", cpuPerGB(r)), mib(r.ProxyRSS), mib(r.PeakRSS)
		}
		if w := r.Relay.PerWakeup(); w > 0 {
			perWake = fmt.Sprintf("%.2f (%.0f%% timer)", w, 100*r.Relay.TimerShare())
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%d\t%.4f%%\t%d\t%d\t%d\t%d\t%d\t%.0f%%\t%s\t%s\t%s\t%s\t%s\n", r.Path, r.Connected, r.Streams, r.Sent,
			100*float64(r.Unique())/float64(max(r.Sent, 1)), lost(r), r.Late, r.Sender.Retrans, r.RecvLoss, r.UDPDrops, r.MachineIdle, cpu, perGB, perWake, rss, peak)
	}
	tw.Flush()
	for _, r := range rs {
		if len(r.ConnectErrors) > 0 {
			fmt.Fprintf(w, "  %s: publishers that did not connect: %s\n", r.Path, topErrors(r.ConnectErrors, 3))
		}
	}
	fmt.Fprintln(w, "  DELIVERED = distinct packets the origin's application read ÷ packets sent; LOST = never delivered;")
	fmt.Fprintln(w, "  RETRANS = the publishers' own retransmission counters; RECV-LOSS = gaps the origin's SRT receiver detected;")
	fmt.Fprintln(w, "  UDP DROPS = datagrams the kernel dropped for full receive buffers, machine-wide, during the run;")
	fmt.Fprintln(w, "  IDLE = machine CPU left idle during the run (near 0%: the machine, not the path, was the limit);")
	fmt.Fprintln(w, "  PKTS/WAKE = datagrams the plugin's session-socket relay moved per wake-up, by datagrams or its batch timer",
		"(timer: the share of wake-ups that were the batch timer's)")
	l4, haveL4 := findPath(rs, lh.L4Proxy, func(r *lh.StreamResult) lh.Path { return r.Path })
	for _, p := range pluginPaths {
		r, ok := findPath(rs, p, func(r *lh.StreamResult) lh.Path { return r.Path })
		if !ok || !haveL4 {
			continue
		}
		fmt.Fprintf(w, "  %s ÷ l4proxy: CPU/GB %s (target ≤ %.2f), RSS %s\n", p,
			ratio(cpuPerGB(r), cpuPerGB(l4)), targetCPUPerGB, ratio(float64(r.ProxyRSS), float64(l4.ProxyRSS)))
	}
}

func gbOf(rs []*lh.StreamResult) float64 {
	if len(rs) == 0 {
		return 0
	}
	return rs[0].GB()
}

func printConnects(w io.Writer, kind lh.PeerKind, n int, rs []*lh.ConnectResult) {
	caller := "gosrt Dial"
	if kind == lh.Libsrt {
		caller = "libsrt srt_connect (C caller)"
	}
	fmt.Fprintf(w, "\n== connect time: %d sequential %s, ms\n", n, caller)
	pathOf := func(r *lh.ConnectResult) lh.Path { return r.Path }
	direct, haveDirect := findPath(rs, lh.Direct, pathOf)
	l4, haveL4 := findPath(rs, lh.L4Proxy, pathOf)
	tw := newTable(w)
	fmt.Fprintln(tw, "PATH\tOK\tFAILED\tp50\tp90\tp99\tp50 ÷ direct\tp50 ÷ l4proxy")
	for _, r := range rs {
		relDirect, relL4 := "-", "-"
		p50 := float64(r.Times.Percentile(50))
		if haveDirect && r.Path != lh.Direct {
			relDirect = ratio(p50, float64(direct.Times.Percentile(50)))
		}
		if haveL4 && r.Path != lh.Direct && r.Path != lh.L4Proxy {
			relL4 = ratio(p50, float64(l4.Times.Percentile(50)))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Path, len(r.Times), r.Failures,
			ms(r.Times.Percentile(50)), ms(r.Times.Percentile(90)), ms(r.Times.Percentile(99)), relDirect, relL4)
	}
	tw.Flush()
	fmt.Fprintf(w, "  target: plugin p50 ≤ %.1f × direct\n", targetConnect)
}

func printIdle(w io.Writer, n int, hold time.Duration, rs []*lh.IdleResult) {
	fmt.Fprintf(w, "\n== %d idle SRT sessions (handshake, then one keepalive a second each way, as idle libsrt peers), held %v\n", n, hold)
	tw := newTable(w)
	fmt.Fprintln(tw, "PATH\tCONNECTED\tALIVE AT END\tRSS BEFORE MiB\tRSS AFTER MiB\tKiB/SESSION\tPROXY CPU s (hold)\tCONNECT p50 ms\tp99 ms")
	for _, r := range rs {
		before, after, per, cpu := "-", "-", "-", "-"
		if r.Path != lh.Direct {
			before, after, per, cpu = mib(r.RSSBefore), mib(r.RSSAfter), fmt.Sprintf("%.1f", r.PerSessionKiB()), fmt.Sprintf("%.2f", r.ProxyCPU.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Path, r.Connected, r.AliveAtEnd, before, after, per, cpu,
			ms(r.ConnectTime.Percentile(50)), ms(r.ConnectTime.Percentile(99)))
	}
	tw.Flush()
	for _, r := range rs {
		if len(r.Errors) > 0 {
			fmt.Fprintf(w, "  %s failures: %s\n", r.Path, topErrors(r.Errors, 3))
		}
	}
	fmt.Fprintf(w, "  KiB/SESSION = (RSS after − RSS before) ÷ sessions connected; target ≤ %d KiB\n", targetIdleKiB)
	pathOf := func(r *lh.IdleResult) lh.Path { return r.Path }
	if l4, ok := findPath(rs, lh.L4Proxy, pathOf); ok {
		for _, p := range pluginPaths {
			if r, ok := findPath(rs, p, pathOf); ok {
				fmt.Fprintf(w, "  %s ÷ l4proxy: KiB/session %s, CPU while idle %s\n", p,
					ratio(r.PerSessionKiB(), l4.PerSessionKiB()), ratio(r.ProxyCPU.Seconds(), l4.ProxyCPU.Seconds()))
			}
		}
	}
}

func printStorm(w io.Writer, kind lh.PeerKind, workers int, d time.Duration, rs []*lh.StormResult) {
	who := fmt.Sprintf("%d gosrt callers (each handshake packet sent once)", workers)
	if kind == lh.Libsrt {
		who = fmt.Sprintf("%d C caller processes (libsrt; handshake packets repeated every 250 ms)", workers)
	}
	fmt.Fprintf(w, "\n== handshake storm: %s connecting and closing in a loop for %v\n", who, d)
	tw := newTable(w)
	fmt.Fprintln(tw, "PATH\tATTEMPTS\tCONNECTED\tFAILED\tHANDSHAKES/s\tp50 ms\tp90 ms\tp99 ms\tUDP DROPS\tIDLE\tPROXY CPU s\tCPU ms/HS\tPEAK MiB")
	for _, r := range rs {
		cpu, per, peak := "-", "-", "-"
		if r.Path != lh.Direct {
			cpu, peak = fmt.Sprintf("%.2f", r.ProxyCPU.Seconds()), mib(r.PeakRSS)
			if len(r.Times) > 0 {
				per = fmt.Sprintf("%.3f", 1000*cpuPerHandshake(r))
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f%%\t%.0f\t%s\t%s\t%s\t%d\t%.0f%%\t%s\t%s\t%s\n", r.Path, r.Attempts, len(r.Times), r.FailurePercent(),
			r.PerSecond(), ms(r.Times.Percentile(50)), ms(r.Times.Percentile(90)), ms(r.Times.Percentile(99)), r.UDPDrops, r.MachineIdle, cpu, per, peak)
	}
	tw.Flush()
	for _, r := range rs {
		if len(r.Errors) > 0 {
			fmt.Fprintf(w, "  %s failures: %s\n", r.Path, topErrors(r.Errors, 3))
		}
	}
	pathOf := func(r *lh.StormResult) lh.Path { return r.Path }
	if l4, ok := findPath(rs, lh.L4Proxy, pathOf); ok {
		for _, p := range pluginPaths {
			if r, ok := findPath(rs, p, pathOf); ok {
				fmt.Fprintf(w, "  %s ÷ l4proxy: handshakes/s %s, CPU per handshake %s, peak RSS %s\n", p,
					ratio(r.PerSecond(), l4.PerSecond()), ratio(cpuPerHandshake(r), cpuPerHandshake(l4)),
					ratio(float64(r.PeakRSS), float64(l4.PeakRSS)))
			}
		}
	}
	fmt.Fprintf(w, "  target: ≥ %d handshakes/s with < %.0f%% failures\n", targetHandshakes, targetFailures)
}

func topErrors(m map[string]int, n int) string {
	type kv struct {
		err   string
		count int
	}
	var list []kv
	for e, c := range m {
		list = append(list, kv{e, c})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].count > list[j].count })
	var parts []string
	for i := 0; i < len(list) && i < n; i++ {
		parts = append(parts, fmt.Sprintf("%d× %q", list[i].count, list[i].err))
	}
	return strings.Join(parts, "; ")
}

func cpuPerHandshake(r *lh.StormResult) float64 {
	if len(r.Times) == 0 {
		return 0
	}
	return r.ProxyCPU.Seconds() / float64(len(r.Times))
}
