package srthandler_test

// The ebpf data path end to end, in three network namespaces: callers in
// the test's, the proxy in one of its own (a child process, see
// testpeer.Topology), origins in a third behind it, joined by veth pairs
// (NewRoutedTopology). Root only; they skip without it, and fail under
// SRT_PRIVILEGED=required (CI).

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/ebpf"
	"github.com/srtroute/caddy-l4-srt/internal/peer"
	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/srthandler"
)

// TestEBPFChildProxy is the child proxy of these tests: it does nothing
// when run as a test.
func TestEBPFChildProxy(t *testing.T) { testpeer.ServeChildProxy(t, ebpf.Close) }

const ebpfChild = "TestEBPFChildProxy"

// ebpfHandler routes every caller to origin on the ebpf path.
func ebpfHandler(origin string) map[string]any {
	return map[string]any{
		"data_path": "ebpf",
		"routes":    []any{map[string]any{"to": to(origin)}},
	}
}

// ebpfProxy starts the child proxy with ebpfHandler.
func ebpfProxy(t *testing.T, tp *testpeer.Topology, origin string, dropCaps bool) *testpeer.ChildProxy {
	t.Helper()
	return tp.StartChildProxy(t, ebpfHandler(origin), testpeer.ChildProxyOptions{Run: ebpfChild, DropCaps: dropCaps})
}

func ebpfSessions(t *testing.T, cp *testpeer.ChildProxy) []srthandler.SessionView {
	t.Helper()
	var out []srthandler.SessionView
	if err := cp.GetJSON("/srt/sessions", &out); err != nil {
		t.Fatalf("GET /srt/sessions: %v", err)
	}
	return out
}

// bpfLeft lists what of the data path the kernel still holds: programs
// and maps by name (they are global), and the TCX links and tc filters of
// the proxy's interfaces as its namespace sees them.
func bpfLeft(t *testing.T, tp *testpeer.Topology) []string {
	t.Helper()
	var left []string
	for _, what := range [][]string{{"prog", "show", "name", "srt_ingress"}, {"map", "show", "name", "srt_flows"}, {"map", "show", "name", "srt_flows6"}, {"map", "show", "name", "srt_deadline"}} {
		out, _ := exec.Command("bpftool", what...).CombinedOutput()
		if s := strings.TrimSpace(string(out)); s != "" && !strings.Contains(s, "Error") {
			left = append(left, "bpftool "+strings.Join(what, " ")+": "+s)
		}
	}
	for _, ifi := range tp.ProxyIfaces {
		out, err := tp.Exec("bpftool", "net", "show", "dev", ifi)
		if err != nil {
			t.Fatalf("bpftool net show dev %s: %v: %s", ifi, err, out)
		}
		if strings.Contains(out, "srt_ingress") {
			left = append(left, "bpftool net show dev "+ifi+": "+out)
		}
		if n := tcFilters(t, tp, ifi); n != 0 {
			left = append(left, fmt.Sprintf("tc filter show dev %s ingress: %d srt_ingress filters", ifi, n))
		}
	}
	return left
}

// tcFilters counts the srt_ingress filters at ingress of the proxy's
// interface ifi, as tc lists them.
func tcFilters(t *testing.T, tp *testpeer.Topology, ifi string) int {
	t.Helper()
	out, err := tp.Exec("tc", "filter", "show", "dev", ifi, "ingress")
	if err != nil {
		t.Fatalf("tc filter show dev %s ingress: %v: %s", ifi, err, out)
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "srt_ingress") {
			n++
		}
	}
	return n
}

// tcShow is what tc shows of the proxy's interface ifi: qdisc, or filter
// at ingress or egress.
func tcShow(t *testing.T, tp *testpeer.Topology, what, ifi string, dir ...string) string {
	t.Helper()
	out, err := tp.Exec("tc", append([]string{what, "show", "dev", ifi}, dir...)...)
	if err != nil {
		t.Fatalf("tc %s show dev %s: %v: %s", what, ifi, err, out)
	}
	return out
}

// waitNoBPF fails the test unless bpfLeft empties within a few seconds:
// the kernel frees a program or map once its last reference is gone,
// which may trail the close of the last descriptor a little.
func waitNoBPF(t *testing.T, tp *testpeer.Topology, when string) {
	t.Helper()
	var left []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		if left = bpfLeft(t, tp); len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s:\n%s", when, strings.Join(left, "\n"))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func requireBPFTool(t *testing.T) {
	t.Helper()
	testpeer.RequirePrivileged(t)
	testpeer.RequireTool(t, "bpftool")
}

// ebpfStream sends data from an srt-live-transmit caller through cp and
// returns the caller, still connected, once the origin l has it all.
func ebpfStream(t *testing.T, cp *testpeer.ChildProxy, l *testpeer.SLTListener, data []byte) *testpeer.SLTCaller {
	t.Helper()
	return ebpfStreamWith(t, cp, testpeer.SLTOptions{}, data, nil)
}

// ebpfStreamWith is ebpfStream with caller options, and midway (when
// non-nil) run halfway through the data.
func ebpfStreamWith(t *testing.T, cp *testpeer.ChildProxy, o testpeer.SLTOptions, data []byte, midway func()) *testpeer.SLTCaller {
	t.Helper()
	c := testpeer.StartSLTCaller(t, cp.Addr, "#!::r=live/ebpf,m=publish", o)
	if !c.Connected() {
		t.Fatalf("srt-live-transmit did not connect to %s; stderr:\n%s", cp.Addr, c.Stderr())
	}
	half := len(data) / 2 / 1316 * 1316
	if midway == nil {
		half = len(data)
	}
	if err := c.Feed(data[:half], 1316, time.Millisecond); err != nil {
		t.Fatalf("feeding srt-live-transmit: %v", err)
	}
	if midway != nil {
		midway()
		if err := c.Feed(data[half:], 1316, time.Millisecond); err != nil {
			t.Fatalf("feeding srt-live-transmit: %v", err)
		}
	}
	// The origin's output is buffered: wait for the session's counters.
	waitFor(t, 10*time.Second, "the session to carry every packet", func() bool {
		s := ebpfSessions(t, cp)
		return len(s) == 1 && s[0].FromCaller.KernelPackets >= uint64(len(data)/1316)
	})
	time.Sleep(interopSettle)
	return c
}

// TestEBPFStream: a libsrt stream on the ebpf path arrives whole and in
// order; the kernel forwarded its data packets (the relay saw almost
// nothing from the caller); the caller's SHUTDOWN ends the session; and
// once the last session has ended nothing of the program is left.
func TestEBPFStream(t *testing.T) {
	requireBPFTool(t)
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	cp := ebpfProxy(t, tp, l.Addr, false)
	ebpfStreamOffloaded(t, tp, cp, l)
}

// TestEBPFStreamIPv6: TestEBPFStream with caller, proxy and origin on
// IPv6: the stream arrives whole and in order, the kernel forwarding it
// (srt_flows6), and nothing is left after the last session and after
// stop.
func TestEBPFStreamIPv6(t *testing.T) {
	requireBPFTool(t)
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide6, Netns: tp.OriginNS})
	cp := ebpfProxy(t, tp, l.Addr, false)
	// The proxy listens on every address of its namespace, IPv6 too.
	cp.Addr = net.JoinHostPort(tp.ProxyCallerSide6, "10080")
	v := ebpfStreamOffloaded(t, tp, cp, l)
	if caller, err := netip.ParseAddrPort(v.Caller); err != nil || caller.Addr().String() != tp.CallerSide6 {
		t.Errorf("caller %q, want %s (IPv6)", v.Caller, tp.CallerSide6)
	}
}

// ebpfStreamOffloaded streams to l through cp and checks that the kernel
// carried the session: from the caller data packets, keepalives and
// ACKACKs, from the origin ACKs and keepalives, with the origin's ACK
// figures read there; the relay may have seen a handful of others (a
// NAK, say). Then the caller's SHUTDOWN ends it, every byte arrived, and
// nothing of the program is left after the last session and after stop.
// It returns the session as it was during the stream.
func ebpfStreamOffloaded(t *testing.T, tp *testpeer.Topology, cp *testpeer.ChildProxy, l *testpeer.SLTListener) srthandler.SessionView {
	t.Helper()
	data := interopPayload(2000)
	c := ebpfStream(t, cp, l, data)
	s := ebpfSessions(t, cp)
	if len(s) != 1 {
		t.Fatalf("%d sessions, want 1", len(s))
	}
	v := s[0]
	if v.DataPath != "ebpf" {
		t.Errorf("data_path %q, want ebpf", v.DataPath)
	}
	if user := v.FromCaller.Packets - v.FromCaller.KernelPackets; user > 20 {
		t.Errorf("the relay took %d of the caller's %d packets; want nearly none", user, v.FromCaller.Packets)
	}
	if user := v.FromUpstream.Packets - v.FromUpstream.KernelPackets; v.FromUpstream.Packets == 0 || user > 20 {
		t.Errorf("the relay took %d of the origin's %d packets; want nearly none of some", user, v.FromUpstream.Packets)
	}
	if v.UpstreamView == nil || v.UpstreamView.RTTMillis <= 0 {
		t.Errorf("upstream_view %+v; want the origin's ACK figures", v.UpstreamView)
	}
	if len(bpfLeft(t, tp)) == 0 {
		t.Errorf("bpftool shows no program attached during the stream")
	}

	_ = c.Stop() // SHUTDOWN to the proxy
	interopCheckListener(t, l, data)
	waitFor(t, 5*time.Second, "the session to end", func() bool { return len(ebpfSessions(t, cp)) == 0 })
	waitNoBPF(t, tp, "after the last session ended")
	if err := cp.Stop(); err != nil {
		t.Logf("stopping the proxy: %v", err)
	}
	if !strings.Contains(cp.Stderr(), "child proxy stopped") {
		t.Errorf("the proxy did not stop cleanly; stderr:\n%s", cp.Stderr())
	}
	waitNoBPF(t, tp, "after stop")
	return v
}

// TestEBPFMixedFamilies: an IPv6 caller of an IPv4 origin cannot be
// readdressed in the kernel: the session stays on the socket path, whole.
func TestEBPFMixedFamilies(t *testing.T) {
	requireBPFTool(t)
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	cp := ebpfProxy(t, tp, l.Addr, false)
	cp.Addr = net.JoinHostPort(tp.ProxyCallerSide6, "10080")
	data := interopPayload(300)
	c := testpeer.StartSLTCaller(t, cp.Addr, "#!::r=live/ebpf,m=publish", testpeer.SLTOptions{})
	if !c.Connected() {
		t.Fatalf("srt-live-transmit did not connect to %s; stderr:\n%s", cp.Addr, c.Stderr())
	}
	if err := c.Feed(data, 1316, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	s := ebpfSessions(t, cp)
	if len(s) != 1 || s[0].DataPath != "socket" || s[0].FromCaller.KernelPackets != 0 {
		t.Errorf("sessions %+v, want one on the socket path", s)
	}
	if left := bpfLeft(t, tp); len(left) != 0 {
		t.Errorf("the program is loaded for a session it cannot offload:\n%s", strings.Join(left, "\n"))
	}
	time.Sleep(interopSettle)
	_ = c.Stop()
	interopCheckListener(t, l, data)
}

// ebpfTCEnv makes the child proxy attach by tc filters (clsact, cls_bpf),
// the mode of kernels before 6.6.
var ebpfTCEnv = []string{ebpf.AttachEnv + "=" + ebpf.AttachTC}

// TestEBPFTCStream: TestEBPFStream in the tc attach mode. The proxy
// adds one filter per interface, and a clsact qdisc where there was
// none; once the last session has ended, and after stop, no program, map
// or filter is left, nor the clsact it created, while the clsact that was
// there before (the test's, with a filter of its own) still is.
func TestEBPFTCStream(t *testing.T) {
	requireBPFTool(t)
	testpeer.RequireTool(t, "tc")
	tp := testpeer.NewRoutedTopology(t)
	callerIf, originIf := tp.ProxyIfaces[0], tp.ProxyIfaces[1]
	for _, args := range [][]string{
		{"qdisc", "add", "dev", originIf, "clsact"},
		{"filter", "add", "dev", originIf, "egress", "prio", "7", "protocol", "ip", "u32", "match", "u32", "0", "0", "classid", "1:1"},
	} {
		if out, err := tp.Exec("tc", args...); err != nil {
			t.Fatalf("tc %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	theirs := func(when string) {
		t.Helper()
		if q := tcShow(t, tp, "qdisc", callerIf); strings.Contains(q, "clsact") {
			t.Errorf("%s: the clsact qdisc the proxy created on %s is left:\n%s", when, callerIf, q)
		}
		if q := tcShow(t, tp, "qdisc", originIf); !strings.Contains(q, "clsact") {
			t.Errorf("%s: the test's clsact qdisc on %s is gone:\n%s", when, originIf, q)
		}
		if f := tcShow(t, tp, "filter", originIf, "egress"); !strings.Contains(f, "u32") {
			t.Errorf("%s: the test's filter on %s is gone:\n%s", when, originIf, f)
		}
	}

	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	cp := tp.StartChildProxy(t, ebpfHandler(l.Addr), testpeer.ChildProxyOptions{Run: ebpfChild, Env: ebpfTCEnv})
	data := interopPayload(2000)
	c := ebpfStream(t, cp, l, data)
	if s := ebpfSessions(t, cp); len(s) != 1 || s[0].DataPath != "ebpf" {
		t.Errorf("sessions %+v, want one on the ebpf path", s)
	}
	if !strings.Contains(cp.Stderr(), `"attach":"tc"`) {
		t.Errorf("the proxy did not log the tc attach mode; stderr:\n%s", cp.Stderr())
	}
	for _, ifi := range tp.ProxyIfaces {
		if n := tcFilters(t, tp, ifi); n != 1 {
			t.Errorf("%d srt_ingress filters at ingress of %s during the stream, want 1:\n%s", n, ifi, tcShow(t, tp, "filter", ifi, "ingress"))
		}
	}
	if q := tcShow(t, tp, "qdisc", callerIf); !strings.Contains(q, "clsact") {
		t.Errorf("no clsact qdisc on %s during the stream:\n%s", callerIf, q)
	}

	_ = c.Stop()
	interopCheckListener(t, l, data)
	waitFor(t, 5*time.Second, "the session to end", func() bool { return len(ebpfSessions(t, cp)) == 0 })
	waitNoBPF(t, tp, "after the last session ended")
	theirs("after the last session ended")
	if err := cp.Stop(); err != nil {
		t.Logf("stopping the proxy: %v", err)
	}
	waitNoBPF(t, tp, "after stop")
	theirs("after stop")
}

// TestEBPFTCKilled: a SIGKILLed proxy's tc filters outlive it (a filter
// is no file descriptor of the process), but its dead-man's deadline,
// no longer kept ahead, passes within 2 s: from then on a datagram on the
// killed session's 4-tuple goes to the stack (no socket takes it) instead
// of to the origin. The next proxy replaces the leftover filter rather
// than adding a second, and once it is done no program, map or filter is
// left; the clsact qdisc the killed proxy created stays (the next one did
// not create it: see docs/ebpf.md).
func TestEBPFTCKilled(t *testing.T) {
	requireBPFTool(t)
	testpeer.RequireTool(t, "tc")
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	o := testpeer.ChildProxyOptions{Run: ebpfChild, Env: ebpfTCEnv}
	cp := tp.StartChildProxy(t, ebpfHandler(l.Addr), o)
	c := ebpfStream(t, cp, l, interopPayload(300))
	s := ebpfSessions(t, cp)
	if len(s) != 1 {
		t.Fatalf("%d sessions, want 1", len(s))
	}
	cp.Kill()
	killed := time.Now()
	// The peers go too, leaving their addresses to the test's sockets.
	c.Kill()
	l.Kill()
	caller := listenUDP(t, s[0].Caller)
	var origin *net.UDPConn
	inNetns(t, tp.OriginNS, func() { origin = listenUDP(t, l.Addr) })
	proxy := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(cp.Addr))
	// An SRT data packet, as the killed session's caller would send it.
	datagram := make([]byte, 16+100)
	binary.BigEndian.PutUint32(datagram[12:], s[0].UpstreamSocket)
	forwarded := func() bool {
		t.Helper()
		if _, err := caller.WriteToUDP(datagram, proxy); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		_ = origin.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, from, err := origin.ReadFromUDPAddrPort(buf)
		if err != nil {
			return false
		}
		if from.Addr().String() != tp.ProxyOriginSide || n != len(datagram) {
			t.Errorf("the origin got %d bytes from %s", n, from)
		}
		return true
	}
	// Before the deadline the leftover filter still forwards: what the
	// dead-man's switch is for.
	fwd := forwarded()
	t.Logf("%v after SIGKILL: forwarded %v", time.Since(killed).Round(time.Millisecond), fwd)
	if time.Since(killed) < time.Second && !fwd {
		t.Errorf("the killed proxy's filter did not forward before its deadline: is the test blind?")
	}
	for _, ifi := range tp.ProxyIfaces {
		if n := tcFilters(t, tp, ifi); n != 1 {
			t.Errorf("%d srt_ingress filters at ingress of %s after SIGKILL, want the one left", n, ifi)
		}
	}
	time.Sleep(time.Until(killed.Add(3 * time.Second)))
	if forwarded() {
		t.Errorf("3 s after SIGKILL the leftover filter still forwards the killed session's datagrams")
	}

	// The next proxy: exactly one filter of ours per interface.
	caller.Close()
	origin.Close()
	l = testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	cp = tp.StartChildProxy(t, ebpfHandler(l.Addr), o)
	data := interopPayload(300)
	c = ebpfStream(t, cp, l, data)
	for _, ifi := range tp.ProxyIfaces {
		if n := tcFilters(t, tp, ifi); n != 1 {
			t.Errorf("%d srt_ingress filters at ingress of %s beside the next proxy, want 1:\n%s", n, ifi, tcShow(t, tp, "filter", ifi, "ingress"))
		}
	}
	_ = c.Stop()
	interopCheckListener(t, l, data)
	waitFor(t, 5*time.Second, "the session to end", func() bool { return len(ebpfSessions(t, cp)) == 0 })
	waitNoBPF(t, tp, "after the next proxy's last session ended")
}

// inNetns runs fn with its sockets opened in the named network
// namespace (the origins' of a routed topology).
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	if err := peer.InNetns(ns, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// listenUDP binds a UDP socket to addr in the calling thread's namespace.
func listenUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatalf("binding %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEBPFUpstreamShutdown: the origin's SHUTDOWN (srt-live-transmit
// listener stopped) reaches the caller and ends the session.
func TestEBPFUpstreamShutdown(t *testing.T) {
	requireBPFTool(t)
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	cp := ebpfProxy(t, tp, l.Addr, false)
	c := ebpfStream(t, cp, l, interopPayload(300))
	_ = l.Stop()
	waitFor(t, 5*time.Second, "the session to end", func() bool { return len(ebpfSessions(t, cp)) == 0 })
	if exited, _ := c.Wait(5 * time.Second); !exited {
		t.Errorf("the caller did not notice the origin's SHUTDOWN; stderr:\n%s", c.Stderr())
	}
	waitNoBPF(t, tp, "after the last session ended")
}

// TestEBPFKilled: a SIGKILLed proxy leaves no program, link or map.
func TestEBPFKilled(t *testing.T) {
	requireBPFTool(t)
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	cp := ebpfProxy(t, tp, l.Addr, false)
	ebpfStream(t, cp, l, interopPayload(300))
	if len(bpfLeft(t, tp)) == 0 {
		t.Fatalf("bpftool shows no program attached during the stream")
	}
	cp.Kill()
	waitNoBPF(t, tp, "after SIGKILL")
}

// TestEBPFRefused: a proxy without CAP_BPF and CAP_NET_ADMIN serves
// data_path ebpf sessions on the socket path, and says so once.
func TestEBPFRefused(t *testing.T) {
	testpeer.RequirePrivileged(t)
	testpeer.RequireTool(t, "setpriv")
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	cp := ebpfProxy(t, tp, l.Addr, true)
	data := interopPayload(300)
	c := testpeer.StartSLTCaller(t, cp.Addr, "#!::r=live/ebpf,m=publish", testpeer.SLTOptions{})
	if !c.Connected() {
		t.Fatalf("srt-live-transmit did not connect to %s; stderr:\n%s", cp.Addr, c.Stderr())
	}
	if err := c.Feed(data, 1316, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	s := ebpfSessions(t, cp)
	if len(s) != 1 || s[0].DataPath != "socket" || s[0].FromCaller.KernelPackets != 0 {
		t.Errorf("sessions %+v, want one on the socket path", s)
	}
	time.Sleep(interopSettle)
	_ = c.Stop()
	interopCheckListener(t, l, data)
	if n := strings.Count(cp.Stderr(), "ebpf data path unavailable"); n != 1 {
		t.Errorf("the proxy logged the refusal %d times, want once; stderr:\n%s", n, cp.Stderr())
	}
}

// TestEBPFEncryptedAndReload: an encrypted stream (its KM exchange goes
// through user space, its data through the kernel) arrives whole across
// a config reload made midway; the session stays on the ebpf path.
func TestEBPFEncryptedAndReload(t *testing.T) {
	requireBPFTool(t)
	tp := testpeer.NewRoutedTopology(t)
	o := testpeer.SLTOptions{Passphrase: "ebpf-path-secret", Host: tp.OriginSide, Netns: tp.OriginNS}
	l := testpeer.StartSLTListener(t, o)
	cp := ebpfProxy(t, tp, l.Addr, false)
	data := interopPayload(2000)
	var before uint64
	c := ebpfStreamWith(t, cp, o, data, func() {
		s := ebpfSessions(t, cp)
		if len(s) != 1 {
			t.Fatalf("%d sessions before the reload, want 1", len(s))
		}
		before = s[0].FromCaller.KernelPackets
		h := ebpfHandler(l.Addr)
		h["idle_timeout"] = "20s"
		if err := cp.Reload(h); err != nil {
			t.Fatalf("reload: %v", err)
		}
	})
	s := ebpfSessions(t, cp)
	if len(s) != 1 || s[0].DataPath != "ebpf" || s[0].FromCaller.KernelPackets <= before {
		t.Errorf("after the reload: sessions %+v; want the one, on the ebpf path, its kernel count past %d", s, before)
	}
	_ = c.Stop()
	interopCheckListener(t, l, data)
}

// TestEBPFGosrt: a gosrt stream on the ebpf path, every byte delivered.
func TestEBPFGosrt(t *testing.T) {
	requireBPFTool(t)
	tp := testpeer.NewRoutedTopology(t)
	var b *srtbackend.Server
	inNetns(t, tp.OriginNS, func() { b = startBackendAt(t, "gosrt", tp.OriginSide+":0") })
	cp := ebpfProxy(t, tp, b.Addr(), false)
	conn, err := testpeer.Dial(cp.Addr, "#!::r=live/gosrt,m=publish", testpeer.DialOptions{})
	if err != nil {
		t.Fatalf("gosrt dial through the proxy: %v", err)
	}
	defer conn.Close()
	payload := interopPayload(1000)
	for i := 0; i < len(payload); i += 1316 {
		if _, err := conn.Write(payload[i : i+1316]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Microsecond)
	}
	waitFor(t, 10*time.Second, "the backend to receive every byte", func() bool { return b.Published("live/gosrt") >= uint64(len(payload)) })
	if got := b.Published("live/gosrt"); got != uint64(len(payload)) {
		t.Errorf("backend received %d bytes, want %d", got, len(payload))
	}
	s := ebpfSessions(t, cp)
	if len(s) != 1 || s[0].DataPath != "ebpf" || s[0].FromCaller.KernelPackets < 1000 {
		t.Errorf("sessions %+v; want one on the ebpf path, the kernel forwarding the data", s)
	}
}

// TestEBPFIdle: a session on the ebpf path lives while the kernel
// forwards its packets, whatever the relay sees; once its peers both fall
// silent (stopped, not gone) it ends at its idle timeout, and its flow
// leaves the kernel.
func TestEBPFIdle(t *testing.T) {
	requireBPFTool(t)
	tp := testpeer.NewRoutedTopology(t)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
	h := ebpfHandler(l.Addr)
	h["idle_timeout"] = "1s"
	cp := tp.StartChildProxy(t, h, testpeer.ChildProxyOptions{Run: ebpfChild})
	// Longer than the idle timeout, with every packet in the kernel: the
	// idle check must count those.
	c := ebpfStream(t, cp, l, interopPayload(2000))
	// Kept stopped for the idle timeout and more: no keepalive either way.
	for _, p := range []*testpeer.Process{c.Process, l.Process} {
		p.Signal(syscall.SIGSTOP)
		defer p.Signal(syscall.SIGCONT)
	}
	waitFor(t, 5*time.Second, "the idle session to end", func() bool { return len(ebpfSessions(t, cp)) == 0 })
	if !strings.Contains(cp.Stderr(), `"reason":"idle_timeout"`) {
		t.Errorf("the session did not end for idleness; proxy stderr:\n%s", cp.Stderr())
	}
	waitNoBPF(t, tp, "after the idle session ended")
}

// TestEBPFAuto: data_path auto takes the ebpf path where it loads, and
// without the capabilities a path that does not grow with sessions (the
// socket path on this kernel, 6.13 or later; the listener before), and
// logs which.
func TestEBPFAuto(t *testing.T) {
	requireBPFTool(t)
	testpeer.RequireTool(t, "setpriv")
	for _, tc := range []struct {
		name     string
		dropCaps bool
		want     string
	}{
		{"privileged", false, "ebpf"},
		{"no capabilities", true, map[bool]string{true: "socket", false: "listener"}[ebpf.KernelAtLeast(6, 13)]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := testpeer.NewRoutedTopology(t)
			l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Host: tp.OriginSide, Netns: tp.OriginNS})
			h := ebpfHandler(l.Addr)
			h["data_path"] = "auto"
			cp := tp.StartChildProxy(t, h, testpeer.ChildProxyOptions{Run: ebpfChild, DropCaps: tc.dropCaps})
			data := interopPayload(300)
			c := testpeer.StartSLTCaller(t, cp.Addr, "#!::r=live/auto,m=publish", testpeer.SLTOptions{})
			if !c.Connected() {
				t.Fatalf("srt-live-transmit did not connect; stderr:\n%s", c.Stderr())
			}
			if err := c.Feed(data, 1316, time.Millisecond); err != nil {
				t.Fatal(err)
			}
			s := ebpfSessions(t, cp)
			if len(s) != 1 || s[0].DataPath != tc.want {
				t.Errorf("sessions %+v, want one on the %s path", s, tc.want)
			}
			time.Sleep(interopSettle)
			_ = c.Stop()
			interopCheckListener(t, l, data)
			if n := strings.Count(cp.Stderr(), `"msg":"data_path auto","data_path":"`+tc.want+`"`); n != 1 {
				t.Errorf("the proxy logged auto's choice %d times, want once; stderr:\n%s", n, cp.Stderr())
			}
			// This kernel has TCX: the line says how the program is attached.
			if attach := strings.Contains(cp.Stderr(), `"attach":"tcx"`); attach != (tc.want == "ebpf") {
				t.Errorf("attach mode logged: %v, want %v; stderr:\n%s", attach, tc.want == "ebpf", cp.Stderr())
			}
		})
	}
}
