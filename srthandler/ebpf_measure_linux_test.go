package srthandler_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
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
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// TestEBPFMeasure is a measurement, not a test: with SRT_EBPF_MEASURE=1
// it sends one ~100 Mbit/s libsrt stream through the proxy on the socket
// path (batched and not), on the ebpf path and direct (three rounds each,
// in the netns topology of the ebpf tests, the origin in a namespace of its
// own) and logs CPU seconds per GB: the proxy's, and the whole
// path's (both libsrt peers, the proxy, ksoftirqd; the scheduler's
// accounting). docs/ebpf.md has the figures.
//
//	SRT_EBPF_MEASURE=1 go test -count=1 -v -run TestEBPFMeasure ./srthandler/
func TestEBPFMeasure(t *testing.T) {
	if os.Getenv("SRT_EBPF_MEASURE") == "" {
		t.Skip("a measurement: set SRT_EBPF_MEASURE=1")
	}
	requireBPFTool(t)
	const seconds = 10
	data := interopPayload(seconds * 9500) // ~100 Mbit/s at 9.5 packets a millisecond
	results := map[string][][2]float64{}
	rounds := 3
	if s := os.Getenv("SRT_EBPF_MEASURE_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	for round := 0; round < rounds; round++ {
		for _, path := range measurePaths {
			t.Run(fmt.Sprintf("%s-%d", path, round), func(t *testing.T) {
				proxy, whole := measureStream(t, path, data)
				results[path] = append(results[path], [2]float64{proxy, whole})
			})
		}
	}
	var report strings.Builder
	for _, path := range measurePaths {
		var proxy, whole []float64
		for _, r := range results[path] {
			proxy, whole = append(proxy, r[0]), append(whole, r[1])
		}
		slices.Sort(proxy)
		slices.Sort(whole)
		fmt.Fprintf(&report, "%-16s proxy CPU-s/GB %v (median %.2f)  whole path %v (median %.2f)\n", path, proxy, median(proxy), whole, median(whole))
	}
	for _, path := range measurePaths {
		r := slices.Clone(rttMicros[path])
		slices.Sort(r)
		fmt.Fprintf(&report, "%-16s libsrt RTT, us: %.0f (median of the rounds' medians)\n", path, median(r))
	}
	direct := median(wholeOf(results["direct"]))
	for _, path := range []string{"socket-unbatched", "ebpf"} {
		beyond := median(wholeOf(results[path])) - direct
		fmt.Fprintf(&report, "%-16s whole path beyond direct: %.2f CPU-s/GB, %.2fx the socket path's\n", path,
			beyond, beyond/(median(wholeOf(results["socket"]))-direct))
	}
	t.Log("\n" + report.String())
}

func wholeOf(rs [][2]float64) []float64 {
	var out []float64
	for _, r := range rs {
		out = append(out, r[1])
	}
	slices.Sort(out)
	return out
}

// measurePaths are the paths TestEBPFMeasure compares: direct is the
// caller dialling the origin through the proxy's namespace as a plain
// router (same interfaces, no proxy); socket-unbatched
// is the socket path with batch_window off, which adds as little delay as
// the ebpf path; libsrt's caller then takes its input more slowly (the
// same happens on the ebpf path), so it compares at the same stream rate.
var measurePaths = []string{"direct", "socket", "socket-unbatched", "ebpf"}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

func measureStream(t *testing.T, path string, data []byte) (proxyPerGB, wholePerGB float64) {
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	target := l.Addr
	var cp *testpeer.ChildProxy
	if path != "direct" {
		h := ebpfHandler(l.Addr)
		h["data_path"] = path
		if path == "socket-unbatched" {
			h["data_path"], h["batch_window"] = "socket", -1
		}
		cp = tp.StartChildProxy(t, h, testpeer.ChildProxyOptions{Run: ebpfChild})
		target = cp.Addr
	}
	stats := filepath.Join(t.TempDir(), "stats.json")
	c := testpeer.StartSLTCaller(t, target, "#!::r=live/measure,m=publish",
		testpeer.SLTOptions{StatsFile: stats, StatsEvery: 200 * time.Millisecond})
	if !c.Connected() {
		t.Fatalf("not connected: %s", c.Stderr())
	}
	pids := append([]int{0, c.Pid(), l.Pid()}, testpeer.KsoftirqdPids()...)
	if cp != nil {
		pids[0] = cp.Pid()
	}
	cpu := func() (proxy, whole time.Duration) {
		for i, pid := range pids {
			if pid == 0 {
				continue
			}
			d := testpeer.CPUTime(pid)
			if i == 0 {
				proxy = d
			}
			whole += d
		}
		return proxy, whole
	}
	p0, w0 := cpu()
	c0, o0 := testpeer.CPUTime(c.Pid()), testpeer.CPUTime(l.Pid())
	start := time.Now()
	if err := c.Feed(data, 13160, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	fed := time.Since(start)
	time.Sleep(interopSettle)
	p1, w1 := cpu()
	t.Logf("%s: fed in %v; caller CPU %v, origin CPU %v", path, fed.Round(time.Millisecond),
		(testpeer.CPUTime(c.Pid()) - c0).Round(time.Millisecond), (testpeer.CPUTime(l.Pid()) - o0).Round(time.Millisecond))
	gb := float64(len(data)) / 1e9
	rate := float64(len(data)) * 8 / time.Since(start).Seconds() / 1e6
	if cp != nil {
		s := ebpfSessions(t, cp)
		if len(s) != 1 {
			t.Fatalf("%d sessions", len(s))
		}
		t.Logf("%s: %.0f Mbit/s, %d packets from the caller (%d in the kernel); proxy %v, whole path %v",
			path, rate, s[0].FromCaller.Packets, s[0].FromCaller.KernelPackets, p1-p0, w1-w0)
	} else {
		t.Logf("%s: %.0f Mbit/s; whole path %v", path, rate, w1-w0)
	}
	_ = c.Stop()
	got := l.Finish(5 * time.Second)
	if len(got) != len(data) {
		t.Logf("%s: origin got %d of %d bytes", path, len(got), len(data))
	}
	rtts := sltRTTs(t, stats)
	rttMicros[path] = append(rttMicros[path], median(rtts))
	t.Logf("%s: libsrt's RTT, median of %d reports: %.0f us", path, len(rtts), median(rtts))
	return (p1 - p0).Seconds() / gb, (w1 - w0).Seconds() / gb
}

// rttMicros collects, per path, the median of libsrt's RTT estimate over
// each round, in microseconds.
var rttMicros = map[string][]float64{}

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
// and 10,000 idle sessions (keepalives only) beside it, on the socket
// and the ebpf path. Per packet is the CPU during the stream less the CPU
// of an idle window as long, over the packets the stream's session
// counted both ways: the proxy's, and the whole path's (both libsrt
// peers, the proxy, ksoftirqd). SRT_EBPF_MEASURE_SESSIONS picks the
// counts (default 10,1000,10000, the last bounded by the descriptor
// limit).
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
		for _, path := range []string{"socket", "ebpf"} {
			t.Run(fmt.Sprintf("%s-%d", path, n), func(t *testing.T) {
				proxy, whole := measurePerPacket(t, path, n)
				fmt.Fprintf(&report, "%-6s %6d idle sessions: proxy %6.0f ns/packet, whole path %6.0f ns/packet\n", path, n, proxy, whole)
			})
		}
	}
	t.Log("\n" + report.String())
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
	pids := append([]int{cp.Pid(), c.Pid(), l.Pid()}, testpeer.KsoftirqdPids()...)
	cpu := func() (proxy, whole time.Duration) {
		for i, pid := range pids {
			d := testpeer.CPUTime(pid)
			if i == 0 {
				proxy = d
			}
			whole += d
		}
		return proxy, whole
	}
	const window = 5 * time.Second
	data := interopPayload(int(window.Milliseconds()) * 95 / 10)
	p0, w0 := cpu()
	time.Sleep(window)
	p1, w1 := cpu()
	start := time.Now()
	if err := c.Feed(data, 13160, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(interopSettle)
	took := time.Since(start)
	p2, w2 := cpu()
	// The idle window scaled to the stream's length.
	scale := float64(took) / float64(window)
	proxyStream := float64(p2-p1) - scale*float64(p1-p0)
	wholeStream := float64(w2-w1) - scale*float64(w1-w0)

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
	_ = c.Stop()
	return proxyStream / float64(packets), wholeStream / float64(packets)
}
