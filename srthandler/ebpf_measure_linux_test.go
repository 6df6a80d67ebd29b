package srthandler_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// TestEBPFMeasure is a measurement, not a test: with SRT_EBPF_MEASURE=1
// it sends one ~100 Mbit/s libsrt stream through the proxy on the socket
// path and on the ebpf path (three rounds each, in the netns topology of
// the ebpf tests) and logs CPU seconds per GB: the proxy's, and the whole
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
	for round := 0; round < 3; round++ {
		for _, path := range []string{"socket", "ebpf"} {
			t.Run(fmt.Sprintf("%s-%d", path, round), func(t *testing.T) {
				proxy, whole := measureStream(t, path, data)
				results[path] = append(results[path], [2]float64{proxy, whole})
			})
		}
	}
	var report strings.Builder
	for _, path := range []string{"socket", "ebpf"} {
		var proxy, whole []float64
		for _, r := range results[path] {
			proxy, whole = append(proxy, r[0]), append(whole, r[1])
		}
		slices.Sort(proxy)
		slices.Sort(whole)
		fmt.Fprintf(&report, "%-6s proxy CPU-s/GB %v (median %.2f)  whole path %v (median %.2f)\n", path, proxy, median(proxy), whole, median(whole))
	}
	t.Log("\n" + report.String())
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

func measureStream(t *testing.T, path string, data []byte) (proxyPerGB, wholePerGB float64) {
	tp := testpeer.NewTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide})
	h := ebpfHandler(l.Addr)
	h["data_path"] = path
	cp := tp.StartChildProxy(t, h, testpeer.ChildProxyOptions{Run: ebpfChild})
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
	p0, w0 := cpu()
	start := time.Now()
	if err := c.Feed(data, 13160, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(interopSettle)
	p1, w1 := cpu()
	gb := float64(len(data)) / 1e9
	rate := float64(len(data)) * 8 / time.Since(start).Seconds() / 1e6
	s := ebpfSessions(t, cp)
	if len(s) != 1 {
		t.Fatalf("%d sessions", len(s))
	}
	t.Logf("%s: %.0f Mbit/s, %d packets from the caller (%d in the kernel); proxy %v, whole path %v",
		path, rate, s[0].FromCaller.Packets, s[0].FromCaller.KernelPackets, p1-p0, w1-w0)
	_ = c.Stop()
	got := l.Finish(5 * time.Second)
	if len(got) != len(data) {
		t.Logf("%s: origin got %d of %d bytes", path, len(got), len(data))
	}
	return (p1 - p0).Seconds() / gb, (w1 - w0).Seconds() / gb
}
