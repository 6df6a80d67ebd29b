package main

import (
	"fmt"
	"io"
	"sort"

	lh "github.com/srtroute/caddy-l4-srt/internal/loadharness"
)

// pluginPaths are the paths through this plugin, compared with the others.
var pluginPaths = []lh.Path{lh.SRT, lh.SRTUnbatched, lh.SRTListener}

// summary gathers, per plugin path, each figure the issue sets a target
// for.
type summary struct {
	rows []summaryRow
}

type summaryRow struct {
	target, scenario string
	cells            map[lh.Path]string
}

func (s *summary) add(target, scenario string, cell func(p lh.Path) (string, bool)) {
	row := summaryRow{target: target, scenario: scenario, cells: map[lh.Path]string{}}
	for _, p := range pluginPaths {
		if c, ok := cell(p); ok {
			row.cells[p] = c
		}
	}
	if len(row.cells) > 0 {
		s.rows = append(s.rows, row)
	}
}

// saturatedIdle is the machine idle share below which a run measured the
// machine rather than the path.
const saturatedIdle = 10

// saturation notes a run that left the machine almost no idle CPU.
func saturation(idle float64) string {
	if idle >= 0 && idle < saturatedIdle {
		return fmt.Sprintf(" (machine saturated, %.0f%% idle)", idle)
	}
	return ""
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

// addStreams sums up the rounds of a stream load: CPU by the median of
// each round's ratio, loss over all rounds.
func (s *summary) addStreams(l lh.StreamLoad, rounds [][]*lh.StreamResult) {
	pathOf := func(r *lh.StreamResult) lh.Path { return r.Path }
	name := fmt.Sprintf("%d× %s %g Mbit/s", l.Streams, l.Kind, l.Mbps)
	s.add(fmt.Sprintf("relay CPU/GB ≤ %.2f × l4proxy", targetCPUPerGB), name, func(p lh.Path) (string, bool) {
		var xs []float64
		idle := 100.0
		for _, rs := range rounds {
			l4, ok1 := findPath(rs, lh.L4Proxy, pathOf)
			r, ok2 := findPath(rs, p, pathOf)
			if ok1 && ok2 && cpuPerGB(l4) > 0 {
				xs = append(xs, cpuPerGB(r)/cpuPerGB(l4))
				idle = min(idle, r.MachineIdle)
			}
		}
		if len(xs) == 0 {
			return "", false
		}
		sort.Float64s(xs)
		x := xs[len(xs)/2]
		spread := ""
		if len(xs) > 1 {
			spread = fmt.Sprintf(" (%.2f–%.2f over %d rounds)", xs[0], xs[len(xs)-1], len(xs))
		}
		return fmt.Sprintf("%.2f× %s%s%s", x, verdict(x <= targetCPUPerGB), spread, saturation(idle)), true
	})
	s.add("no unrecovered loss where direct has none", name, func(p lh.Path) (string, bool) {
		var lostHere, lostDirect uint64
		var seen, haveDirect bool
		idle := 100.0
		for _, rs := range rounds {
			if d, ok := findPath(rs, lh.Direct, pathOf); ok {
				lostDirect += lost(d)
				haveDirect = true
			}
			if r, ok := findPath(rs, p, pathOf); ok {
				lostHere += lost(r)
				idle = min(idle, r.MachineIdle)
				seen = true
			}
		}
		switch {
		case !seen || !haveDirect:
			return "", false
		case lostDirect > 0:
			return fmt.Sprintf("lost %d (direct lost %d too)", lostHere, lostDirect), true
		}
		return fmt.Sprintf("lost %d %s%s", lostHere, verdict(lostHere == 0), saturation(idle)), true
	})
}

func (s *summary) addConnects(kind lh.PeerKind, rs []*lh.ConnectResult) {
	pathOf := func(r *lh.ConnectResult) lh.Path { return r.Path }
	d, ok := findPath(rs, lh.Direct, pathOf)
	if !ok || len(d.Times) == 0 {
		return
	}
	s.add(fmt.Sprintf("connect p50 ≤ %.1f × direct", targetConnect), string(kind)+" callers", func(p lh.Path) (string, bool) {
		r, ok := findPath(rs, p, pathOf)
		if !ok || len(r.Times) == 0 {
			return "", false
		}
		x := float64(r.Times.Percentile(50)) / float64(d.Times.Percentile(50))
		return fmt.Sprintf("%.2f× %s", x, verdict(x <= targetConnect)), true
	})
}

func (s *summary) addIdle(rs []*lh.IdleResult) {
	s.add(fmt.Sprintf("≤ %d KiB per idle session", targetIdleKiB), "idle sessions", func(p lh.Path) (string, bool) {
		r, ok := findPath(rs, p, func(r *lh.IdleResult) lh.Path { return r.Path })
		if !ok {
			return "", false
		}
		k := r.PerSessionKiB()
		return fmt.Sprintf("%.1f KiB %s", k, verdict(k <= targetIdleKiB)), true
	})
}

func (s *summary) addStorm(kind lh.PeerKind, rs []*lh.StormResult) {
	s.add(fmt.Sprintf("≥ %d handshakes/s, < %.0f%% failed", targetHandshakes, targetFailures), string(kind)+" handshake storm", func(p lh.Path) (string, bool) {
		r, ok := findPath(rs, p, func(r *lh.StormResult) lh.Path { return r.Path })
		if !ok {
			return "", false
		}
		met := r.PerSecond() >= targetHandshakes && r.FailurePercent() < targetFailures
		return fmt.Sprintf("%.0f/s, %.2f%% %s%s", r.PerSecond(), r.FailurePercent(), verdict(met), saturation(r.MachineIdle)), true
	})
}

func (s *summary) print(w io.Writer) {
	if len(s.rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\n== targets (issue 6) — measurements, not pass/fail of the run")
	tw := newTable(w)
	fmt.Fprint(tw, "TARGET\tSCENARIO")
	for _, p := range pluginPaths {
		fmt.Fprintf(tw, "\t%s", p)
	}
	fmt.Fprintln(tw)
	for _, r := range s.rows {
		fmt.Fprintf(tw, "%s\t%s", r.target, r.scenario)
		for _, p := range pluginPaths {
			c := r.cells[p]
			if c == "" {
				c = "-"
			}
			fmt.Fprintf(tw, "\t%s", c)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
