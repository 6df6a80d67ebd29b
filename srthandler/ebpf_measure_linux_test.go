package srthandler_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/loadharness"
	"github.com/srtroute/caddy-l4-srt/internal/peer"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"

	// caddy-l4's proxy handler, which the measurement compares with.
	_ "github.com/mholt/caddy-l4/modules/l4proxy"
)

// TestEBPFMeasure is a measurement, not a test (SRT_EBPF_MEASURE=1;
// `make load-kernel` runs it): in the netns topology of the ebpf tests,
// the origin in a namespace of its own, it compares in one run, over
// three rounds, direct, caddy-l4's proxy handler, the socket path
// (batched and not) and the ebpf path:
//   - one ~100 Mbit/s libsrt stream: CPU seconds per GB, the proxy's and
//     the whole path's (generator and sink, both libsrt peers, the proxy,
//     ksoftirqd; the scheduler's accounting, not tick samples), and
//     libsrt's RTT;
//   - the delay each adds per packet: probes carrying their send time,
//     from a caller to an origin both in this process (one clock), timed
//     by the kernel's receive timestamp.
//
// docs/performance.md has the figures.
//
//	SRT_EBPF_MEASURE=1 go test -count=1 -v -run TestEBPFMeasure$ ./srthandler/
func TestEBPFMeasure(t *testing.T) {
	if os.Getenv("SRT_EBPF_MEASURE") == "" {
		t.Skip("a measurement: set SRT_EBPF_MEASURE=1")
	}
	requireBPFTool(t)
	const seconds = 10
	data := interopPayload(seconds * 9500) // ~100 Mbit/s at 9.5 packets a millisecond
	var m measurement
	rounds := 3
	if s := os.Getenv("SRT_EBPF_MEASURE_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	for round := 0; round < rounds; round++ {
		for _, path := range measurePaths {
			t.Run(fmt.Sprintf("%s-%d", path, round), func(t *testing.T) {
				r := measureStream(t, path, data)
				r.delays = measureDelay(t, path)
				m.add(path, r)
			})
		}
	}
	t.Log("\n" + m.report())
}

// measurePaths are the paths TestEBPFMeasure compares: direct is the
// caller dialling the origin through the proxy's namespace as a plain
// router (same interfaces, no proxy); l4proxy is caddy-l4's proxy
// handler with the origin as its one upstream; socket-unbatched is the
// socket path with batch_window off, which adds as little delay as the
// ebpf path; libsrt's caller then takes its input more slowly (the same
// happens on the ebpf path), so it compares at the same stream rate.
var measurePaths = []string{"direct", "l4proxy", "socket", "socket-unbatched", "ebpf"}

// startMeasured starts what path puts between callers and origin: nil
// for direct.
func startMeasured(t *testing.T, tp *testpeer.Topology, path, origin string, o testpeer.ChildProxyOptions) *testpeer.ChildProxy {
	t.Helper()
	o.Run = ebpfChild
	h := ebpfHandler(origin)
	switch path {
	case "direct":
		return nil
	case "l4proxy":
		o.Route = map[string]any{"handle": []any{map[string]any{
			"handler":   "proxy",
			"upstreams": []any{map[string]any{"dial": []string{"udp/" + origin}}},
		}}}
	case "socket-unbatched":
		h["data_path"], h["batch_window"] = "socket", -1
	default:
		h["data_path"] = path
	}
	return tp.StartChildProxy(t, h, o)
}

// pathProcs are the processes of a measured path: the proxy (0 for
// none), and the peers and every ksoftirqd.
type pathProcs struct {
	proxy int
	peers []int
}

func newPathProcs(proxy int, peers ...int) pathProcs {
	return pathProcs{proxy: proxy, peers: append(peers, testpeer.KsoftirqdPids()...)}
}

// cpu reads the CPU time so far of the proxy; of the path (the proxy,
// the peers, ksoftirqd); and of the whole path (that and this process,
// the generator feeding the caller and the sink reading the listener).
func (p pathProcs) cpu() (proxy, path, whole time.Duration) {
	if p.proxy != 0 {
		proxy = testpeer.CPUTime(p.proxy)
	}
	path = proxy
	for _, pid := range p.peers {
		path += testpeer.CPUTime(pid)
	}
	return proxy, path, path + testpeer.CPUTime(os.Getpid())
}

// measured is one round of one path.
type measured struct {
	// CPU seconds per GB: the proxy's; the path's (both libsrt peers,
	// the proxy, ksoftirqd); the whole path's (that and the generator and
	// sink, this process).
	proxyPerGB, pathPerGB, wholePerGB float64
	rtt                               float64 // libsrt's, median of the round, µs
	delays                            loadharness.Delays
}

// measurement collects the rounds, by path.
type measurement struct {
	rounds map[string][]measured
}

func (m *measurement) add(path string, r measured) {
	if m.rounds == nil {
		m.rounds = map[string][]measured{}
	}
	m.rounds[path] = append(m.rounds[path], r)
}

// medianOf is the median over path's rounds of what f picks.
func (m *measurement) medianOf(path string, f func(measured) float64) (float64, []float64) {
	var v []float64
	for _, r := range m.rounds[path] {
		v = append(v, f(r))
	}
	slices.Sort(v)
	return median(v), v
}

func (m *measurement) report() string {
	var b strings.Builder
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	directDelay := func(q float64) float64 {
		v, _ := m.medianOf("direct", func(r measured) float64 { return us(r.delays.Quantile(q)) })
		return v
	}
	fmt.Fprintf(&b, "%-16s %-16s %-26s %-26s %-8s %-24s %s\n", "path", "proxy CPU-s/GB", "peers+kernel CPU-s/GB", "whole path CPU-s/GB", "RTT µs", "added delay p50/p90/p99 µs", "rounds")
	for _, path := range measurePaths {
		p, _ := m.medianOf(path, func(r measured) float64 { return r.proxyPerGB })
		pp, pps := m.medianOf(path, func(r measured) float64 { return r.pathPerGB })
		w, ws := m.medianOf(path, func(r measured) float64 { return r.wholePerGB })
		rtt, _ := m.medianOf(path, func(r measured) float64 { return r.rtt })
		var added [3]float64
		for i, q := range []float64{0.5, 0.9, 0.99} {
			v, _ := m.medianOf(path, func(r measured) float64 { return us(r.delays.Quantile(q)) })
			added[i] = v - directDelay(q)
		}
		fmt.Fprintf(&b, "%-16s %-16.2f %-26s %-26s %-8.0f %-24s %d\n", path, p, fmt.Sprintf("%.2f %.2f", pp, pps), fmt.Sprintf("%.2f %.2f", w, ws), rtt,
			fmt.Sprintf("%.1f / %.1f / %.1f", added[0], added[1], added[2]), len(m.rounds[path]))
	}
	d, _ := m.medianOf("direct", func(r measured) float64 { return us(r.delays.Quantile(0.5)) })
	fmt.Fprintf(&b, "direct: a probe's median trip %.1f µs (the added delays above are over it)\n", d)
	ratio := func(path, base string, f func(measured) float64) float64 {
		a, _ := m.medianOf(path, f)
		c, _ := m.medianOf(base, f)
		return a / c
	}
	proxy := func(r measured) float64 { return r.proxyPerGB }
	fmt.Fprintf(&b, "proxy CPU/GB: ebpf %.3fx socket (target <= 0.05x); socket %.2fx l4proxy, ebpf %.3fx l4proxy\n",
		ratio("ebpf", "socket", proxy), ratio("socket", "l4proxy", proxy), ratio("ebpf", "l4proxy", proxy))
	for _, what := range []struct {
		name string
		f    func(measured) float64
	}{{"peers+kernel", func(r measured) float64 { return r.pathPerGB }}, {"whole path", func(r measured) float64 { return r.wholePerGB }}} {
		direct, _ := m.medianOf("direct", what.f)
		socket, _ := m.medianOf("socket", func(r measured) float64 { return what.f(r) - direct })
		for _, path := range []string{"l4proxy", "socket-unbatched", "ebpf"} {
			beyond, _ := m.medianOf(path, func(r measured) float64 { return what.f(r) - direct })
			fmt.Fprintf(&b, "%-16s %s beyond direct: %.2f CPU-s/GB, %.2fx the socket path's (%.2f)\n", path, what.name, beyond, beyond/socket, socket)
		}
	}
	ebpf, _ := m.medianOf("ebpf", func(r measured) float64 { return us(r.delays.Quantile(0.5)) })
	fmt.Fprintf(&b, "ebpf: added delay, median %.1f µs (target <= 20)\n", ebpf-d)
	return b.String()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// measureStream sends data through path with a libsrt caller and
// listener and measures what it cost.
func measureStream(t *testing.T, path string, data []byte) measured {
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	target := l.Addr
	cp := startMeasured(t, tp, path, l.Addr, testpeer.ChildProxyOptions{})
	if cp != nil {
		target = cp.Addr
	}
	stats := filepath.Join(t.TempDir(), "stats.json")
	c := testpeer.StartSLTCaller(t, target, "#!::r=live/measure,m=publish",
		testpeer.SLTOptions{StatsFile: stats, StatsEvery: 200 * time.Millisecond})
	if !c.Connected() {
		t.Fatalf("not connected: %s", c.Stderr())
	}
	procs := newPathProcs(0, c.Pid(), l.Pid())
	if cp != nil {
		procs.proxy = cp.Pid()
	}
	p0, pp0, w0 := procs.cpu()
	c0, o0 := testpeer.CPUTime(c.Pid()), testpeer.CPUTime(l.Pid())
	start := time.Now()
	if err := c.Feed(data, 13160, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	fed := time.Since(start)
	time.Sleep(interopSettle)
	p1, pp1, w1 := procs.cpu()
	t.Logf("%s: fed in %v; caller CPU %v, origin CPU %v", path, fed.Round(time.Millisecond),
		(testpeer.CPUTime(c.Pid()) - c0).Round(time.Millisecond), (testpeer.CPUTime(l.Pid()) - o0).Round(time.Millisecond))
	gb := float64(len(data)) / 1e9
	rate := float64(len(data)) * 8 / time.Since(start).Seconds() / 1e6
	if cp != nil && path != "l4proxy" {
		s := ebpfSessions(t, cp)
		if len(s) != 1 {
			t.Fatalf("%d sessions", len(s))
		}
		t.Logf("%s: %.0f Mbit/s, %d packets from the caller (%d in the kernel); proxy %v, whole path %v",
			path, rate, s[0].FromCaller.Packets, s[0].FromCaller.KernelPackets, p1-p0, w1-w0)
	} else {
		t.Logf("%s: %.0f Mbit/s; proxy %v, whole path %v", path, rate, p1-p0, w1-w0)
	}
	_ = c.Stop()
	got := l.Finish(5 * time.Second)
	if len(got) != len(data) {
		t.Logf("%s: origin got %d of %d bytes", path, len(got), len(data))
	}
	rtts := sltRTTs(t, stats)
	t.Logf("%s: libsrt's RTT, median of %d reports: %.0f us", path, len(rtts), median(rtts))
	return measured{proxyPerGB: (p1 - p0).Seconds() / gb, pathPerGB: (pp1 - pp0).Seconds() / gb,
		wholePerGB: (w1 - w0).Seconds() / gb, rtt: median(rtts)}
}

// Delay probes: how many, how often, how large (a libsrt data packet's
// size; 2,000 a second is a 21 Mbit/s stream).
const (
	probes     = 10000
	probeEvery = 500 * time.Microsecond
	probeSize  = 1316 + 16
)

// measureDelay sends probes through path, from a caller in this
// namespace to an origin in the origin's, both in this process.
func measureDelay(t *testing.T, path string) loadharness.Delays {
	tp := testpeer.NewRoutedTopology(t)
	var ko *loadharness.KeepaliveOrigin
	if err := peer.InNetns(tp.OriginNS, func() (err error) {
		ko, err = loadharness.StartKeepaliveOriginOn(net.ParseIP(tp.OriginSide))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ko.Close()
	target := ko.Addr()
	if cp := startMeasured(t, tp, path, ko.Addr(), testpeer.ChildProxyOptions{}); cp != nil {
		target = cp.Addr
	}
	k, _, err := loadharness.DialKeepalive(target, "#!::r=probe/delay,m=publish", 5*time.Second)
	if err != nil {
		t.Fatalf("probe caller: %v", err)
	}
	defer k.Close()
	time.Sleep(100 * time.Millisecond) // the ebpf path installs the flow after the conclusion response
	if err := k.SendProbes(probes, probeEvery, probeSize); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	d := ko.ProbeDelays()
	t.Logf("%s: %d of %d probes; delay p50 %v p90 %v p99 %v", path, len(d), probes,
		d.Quantile(0.5), d.Quantile(0.9), d.Quantile(0.99))
	if len(d) < probes*99/100 {
		t.Errorf("%s: %d of %d probes arrived", path, len(d), probes)
	}
	return d
}

// sltRTTs reads the RTT (link.rtt, milliseconds) of every statistics
// report srt-live-transmit wrote, in microseconds, sorted.
func sltRTTs(t *testing.T, file string) []float64 {
	f, err := os.Open(file)
	if err != nil {
		t.Logf("no statistics: %v", err)
		return nil
	}
	defer f.Close()
	var out []float64
	dec := json.NewDecoder(f)
	for {
		var r struct {
			Link struct {
				RTT float64 `json:"rtt"`
			} `json:"link"`
		}
		if err := dec.Decode(&r); err != nil {
			break
		}
		if r.Link.RTT > 0 {
			out = append(out, r.Link.RTT*1000)
		}
	}
	slices.Sort(out)
	return out
}

// TestEBPFMeasureSessions is a measurement too (SRT_EBPF_MEASURE=1): the
// cost per packet of one libsrt stream through the proxy with 10, 1,000
// and 10,000 idle sessions (keepalives only) beside it, on each path
// forced (sessionPaths). Per packet is the CPU during the stream less
// that of the idle windows before and after it (averaged, scaled to the
// stream's length), over the packets the stream's session counted both
// ways: the proxy's, and the whole path's (both libsrt peers, the proxy,
// ksoftirqd). SRT_EBPF_MEASURE_SESSIONS picks the counts (default
// 10,1000,10000, the last bounded by the descriptor limit).
func TestEBPFMeasureSessions(t *testing.T) {
	if os.Getenv("SRT_EBPF_MEASURE") == "" {
		t.Skip("a measurement: set SRT_EBPF_MEASURE=1")
	}
	requireBPFTool(t)
	// Each session holds two descriptors in the proxy: the hard limit
	// (20,000 on the machine of docs/ebpf.md, without CAP_SYS_RESOURCE
	// to raise it) bounds the count.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raising the descriptor limit: %v", err)
	}
	noFile = int(lim.Max)
	bpfStats(t)
	counts := []int{10, 1000, min(10000, (noFile-2000)/2)}
	if s := os.Getenv("SRT_EBPF_MEASURE_SESSIONS"); s != "" {
		counts = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			counts = append(counts, n)
		}
	}
	var report strings.Builder
	for _, n := range counts {
		for _, path := range sessionPaths() {
			t.Run(fmt.Sprintf("%s-%d", path, n), func(t *testing.T) {
				proxy, whole := measurePerPacket(t, path, n)
				fmt.Fprintf(&report, "%-6s %6d idle sessions: proxy %6.0f ns/packet, whole path %6.0f ns/packet\n", path, n, proxy, whole)
			})
		}
	}
	t.Log("\n" + report.String())
}

// sessionPaths are the paths TestEBPFMeasureSessions forces, from
// SRT_EBPF_MEASURE_PATHS (default socket, listener, ebpf; data_path auto
// picks one of them and logs which).
func sessionPaths() []string {
	if s := os.Getenv("SRT_EBPF_MEASURE_PATHS"); s != "" {
		return strings.Split(s, ",")
	}
	return []string{"socket", "listener", "ebpf"}
}

// bpfStats turns on the kernel's accounting of the time each BPF
// program runs (kernel.bpf_stats_enabled) for the test, and back off after.
func bpfStats(t *testing.T) {
	const knob = "/proc/sys/kernel/bpf_stats_enabled"
	was, err := os.ReadFile(knob)
	if err != nil {
		t.Fatalf("bpf_stats: %v", err)
	}
	if err := os.WriteFile(knob, []byte("1"), 0o644); err != nil {
		t.Fatalf("bpf_stats: %v", err)
	}
	t.Cleanup(func() { _ = os.WriteFile(knob, was, 0o644) })
}

// programStats are the runs of the srt_ingress programs loaded and the
// time they took, as bpftool reads them (zero while none is). Programs
// are global, and this bpftool (7.1) cannot tell which namespace's TCX
// link holds one: progs says how many were counted, to catch another
// process's.
type programStats struct{ runs, ns, progs uint64 }

func progStats(t *testing.T) programStats {
	out, err := exec.Command("bpftool", "--json", "prog", "show").Output()
	if err != nil {
		t.Logf("bpftool prog show: %v", err)
		return programStats{}
	}
	var progs []struct {
		Name      string `json:"name"`
		RunTimeNs uint64 `json:"run_time_ns"`
		RunCnt    uint64 `json:"run_cnt"`
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		t.Logf("bpftool prog show: %v", err)
		return programStats{}
	}
	var st programStats
	for _, p := range progs {
		if p.Name == "srt_ingress" {
			st.runs += p.RunCnt
			st.ns += p.RunTimeNs
			st.progs++
		}
	}
	return st
}

// noFile is the descriptor limit the child proxy gets.
var noFile int

func measurePerPacket(t *testing.T, path string, idle int) (proxyNs, wholeNs float64) {
	tp := testpeer.NewTopology(t)
	ko, err := loadharness.StartKeepaliveOriginOn(net.ParseIP(tp.OriginSide))
	if err != nil {
		t.Fatal(err)
	}
	defer ko.Close()
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide})
	h := map[string]any{
		"data_path":          path,
		"idle_timeout":       "120s",
		"max_pending":        1000,
		"max_pending_per_ip": 1000,
		// Every caller comes from one address here.
		"max_sessions_per_ip":   100000,
		"handshake_rate_per_ip": 100000,
		"routes": []any{
			map[string]any{"resource": []string{"idle/*"}, "to": to(ko.Addr())},
			map[string]any{"to": to(l.Addr)},
		},
	}
	cp := tp.StartChildProxy(t, h, testpeer.ChildProxyOptions{Run: ebpfChild, NoFile: noFile})

	callers := make([]*loadharness.KeepaliveCaller, idle)
	defer func() {
		for _, c := range callers {
			if c != nil {
				c.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	var failed atomic.Int32
	for i := range callers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, _, err := loadharness.DialKeepalive(cp.Addr, fmt.Sprintf("#!::r=idle/%d,m=publish", i), 5*time.Second)
			if err != nil {
				failed.Add(1)
				return
			}
			callers[i] = c
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > int32(idle/100) {
		t.Fatalf("%d of %d idle sessions failed to connect", f, idle)
	}

	if prof := os.Getenv("SRT_EBPF_MEASURE_PROFILE"); prof != "" {
		var offloaded int
		for _, s := range ebpfSessions(t, cp) {
			if s.DataPath == "ebpf" {
				offloaded++
			}
		}
		b, err := cp.Get("/debug/pprof/profile?seconds=3")
		if err != nil {
			t.Fatal(err)
		}
		f := fmt.Sprintf("%s-%s-%d.pprof", prof, path, idle)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d of %d sessions offloaded; idle profile in %s", offloaded, idle, f)
	}
	c := testpeer.StartSLTCaller(t, cp.Addr, "#!::r=live/measure,m=publish", testpeer.SLTOptions{})
	if !c.Connected() {
		t.Fatalf("not connected: %s", c.Stderr())
	}
	procs := newPathProcs(cp.Pid(), c.Pid(), l.Pid())
	// The whole path here is the proxy, both libsrt peers and ksoftirqd:
	// this process holds the idle sessions' callers too.
	cpu := func() (proxy, whole time.Duration) {
		proxy, whole, _ = procs.cpu()
		return proxy, whole
	}
	const window = 5 * time.Second
	data := interopPayload(int(window.Milliseconds()) * 95 / 10)
	p0, w0 := cpu()
	idle0 := progStats(t)
	time.Sleep(window)
	p1, w1 := cpu()
	prog0 := progStats(t)
	start := time.Now()
	if err := c.Feed(data, 13160, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(interopSettle)
	took := time.Since(start)
	p2, w2 := cpu()
	prog1 := progStats(t)
	time.Sleep(window)
	p3, w3 := cpu()
	// The idle windows before and after, averaged and scaled to the
	// stream's length.
	scale := float64(took) / float64(2*window)
	proxyStream := float64(p2-p1) - scale*float64(p1-p0+p3-p2)
	wholeStream := float64(w2-w1) - scale*float64(w1-w0+w3-w2)

	var packets uint64
	var kernel uint64
	sessions := ebpfSessions(t, cp)
	for _, s := range sessions {
		if strings.HasPrefix(s.StreamID, "#!::r=live/measure") {
			packets = s.FromCaller.Packets + s.FromUpstream.Packets
			kernel = s.FromCaller.KernelPackets + s.FromUpstream.KernelPackets
		}
	}
	if packets == 0 {
		t.Fatalf("the stream's session is not among the %d live", len(sessions))
	}
	t.Logf("%s, %d idle (%d live): %d packets (%d in the kernel) in %v; proxy idle %v/%v, streaming %v",
		path, idle, len(sessions), packets, kernel, took.Round(time.Millisecond), (p1 - p0).Round(time.Millisecond), window, (p2 - p1).Round(time.Millisecond))
	if runs := prog1.runs - prog0.runs; runs > 0 {
		// The idle sessions' keepalives, as the window before counted
		// them, taken out: what is left is the stream's packets.
		idleScale := float64(took) / float64(window)
		idleRuns, idleNs := float64(prog0.runs-idle0.runs), float64(prog0.ns-idle0.ns)
		t.Logf("%s, %d idle: the program ran %d times during the stream, %.0f ns each; idle: %.0f runs a second, %.0f ns each; the stream's packets alone: %.0f ns each (the kernel's bpf_stats; %d program loaded)",
			path, idle, runs, float64(prog1.ns-prog0.ns)/float64(runs), idleRuns/window.Seconds(), idleNs/max(idleRuns, 1),
			(float64(prog1.ns-prog0.ns)-idleScale*idleNs)/(float64(runs)-idleScale*idleRuns), prog1.progs)
	}
	_ = c.Stop()
	return proxyStream / float64(packets), wholeStream / float64(packets)
}
