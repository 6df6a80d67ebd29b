package testpeer

// A proxy in a network namespace of its own, between the test's
// namespace (where the caller and the origin run, as in every other test)
// and itself over two veth pairs, so that the proxy's datagrams cross real
// interfaces: what the ebpf data path needs (on loopback TC ingress sees
// every datagram twice). Network namespaces are per thread in Go, so the
// proxy runs as a child process: the test binary again, running
// ServeChildProxy.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// RequirePrivileged skips the test unless it runs as root with iproute2,
// failing it instead under SRT_PRIVILEGED=required (CI).
func RequirePrivileged(t testing.TB) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		if os.Getenv(PrivilegedEnv) == "required" {
			t.Fatalf(format+" ("+PrivilegedEnv+"=required)", args...)
		}
		t.Skipf(format+" (set "+PrivilegedEnv+"=required to fail instead)", args...)
	}
	if os.Geteuid() != 0 {
		fail("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		fail("needs iproute2's ip: %v", err)
	}
}

// Topology is a network namespace for the proxy, joined to the test's
// namespace by two veth pairs: one the callers reach the proxy over, one
// the proxy reaches the origins over.
type Topology struct {
	// NS is the proxy's namespace.
	NS string
	// ProxyCallerSide is the proxy's address callers dial;
	// CallerSide the test namespace's end of that link, where callers
	// send from.
	ProxyCallerSide, CallerSide string
	// ProxyOriginSide and OriginSide are the ends of the origin link;
	// origins listen on OriginSide.
	ProxyOriginSide, OriginSide string
	// ProxyCallerSide6, CallerSide6, ProxyOriginSide6 and OriginSide6
	// are the same ends' IPv6 addresses.
	ProxyCallerSide6, CallerSide6 string
	ProxyOriginSide6, OriginSide6 string
	// ProxyIfaces are the proxy's ends of the two links (caller side,
	// origin side), as named in NS.
	ProxyIfaces [2]string
	// OriginNS, when set (NewRoutedTopology), is the origins' namespace:
	// run them there (SLTOptions.Netns).
	OriginNS string
}

var topologies atomic.Uint32

// NewTopology makes the namespace and the links; t.Cleanup removes them
// (deleting the namespace deletes the veth pairs).
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	return newTopology(t, false)
}

// NewRoutedTopology is NewTopology with the origins in a namespace of
// their own (OriginNS) behind the proxy's, which also routes between the
// two: callers can reach an origin directly, through the same interfaces
// as through the proxy, which is what a "direct" baseline needs.
func NewRoutedTopology(t testing.TB) *Topology {
	t.Helper()
	return newTopology(t, true)
}

func newTopology(t testing.TB, routed bool) *Topology {
	t.Helper()
	RequirePrivileged(t)
	n := topologies.Add(1)
	pid := os.Getpid()
	id := fmt.Sprintf("%d%d", pid%100000, n)
	// Subnets of the benchmarking range (198.18.0.0/15, RFC 2544), which
	// no real network uses, chosen from the process id so that another
	// test binary's do not meet them.
	net2 := 18 + pid%2
	net3 := int((uint32(pid/2)*8 + n*2) % 250)
	tp := &Topology{
		NS:              "srtp" + id,
		ProxyCallerSide: fmt.Sprintf("198.%d.%d.1", net2, net3),
		CallerSide:      fmt.Sprintf("198.%d.%d.2", net2, net3),
		ProxyOriginSide: fmt.Sprintf("198.%d.%d.1", net2, net3+1),
		OriginSide:      fmt.Sprintf("198.%d.%d.2", net2, net3+1),
		ProxyIfaces:     [2]string{"pc" + id, "po" + id},
	}
	// And a unique local prefix (fd00::/8) per link, from the same
	// numbers.
	v6 := func(link, host int) string { return fmt.Sprintf("fd53:7274:%x:%x::%d", pid%65536, int(n)*2+link, host) }
	tp.ProxyCallerSide6, tp.CallerSide6 = v6(0, 1), v6(0, 2)
	tp.ProxyOriginSide6, tp.OriginSide6 = v6(1, 1), v6(1, 2)
	hostIfaces := [2]string{"hc" + id, "ho" + id}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", tp.NS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", tp.NS).Run() })
	run("-n", tp.NS, "link", "set", "lo", "up")
	ends := [2][2]string{{tp.ProxyCallerSide, tp.CallerSide}, {tp.ProxyOriginSide, tp.OriginSide}}
	ends6 := [2][2]string{{tp.ProxyCallerSide6, tp.CallerSide6}, {tp.ProxyOriginSide6, tp.OriginSide6}}
	links := 2
	if routed {
		links = 1
		tp.OriginNS = "srto" + id
		run("netns", "add", tp.OriginNS)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", tp.OriginNS).Run() })
		run("-n", tp.OriginNS, "link", "set", "lo", "up")
		run("-n", tp.NS, "link", "add", tp.ProxyIfaces[1], "type", "veth", "peer", "name", "oo"+id, "netns", tp.OriginNS)
		run("-n", tp.NS, "addr", "add", tp.ProxyOriginSide+"/24", "dev", tp.ProxyIfaces[1])
		run("-n", tp.NS, "link", "set", tp.ProxyIfaces[1], "up")
		// nodad: usable at once, not after duplicate address detection.
		run("-n", tp.NS, "-6", "addr", "add", tp.ProxyOriginSide6+"/64", "dev", tp.ProxyIfaces[1], "nodad")
		run("-n", tp.OriginNS, "addr", "add", tp.OriginSide+"/24", "dev", "oo"+id)
		run("-n", tp.OriginNS, "-6", "addr", "add", tp.OriginSide6+"/64", "dev", "oo"+id, "nodad")
		run("-n", tp.OriginNS, "link", "set", "oo"+id, "up")
		run("-n", tp.OriginNS, "route", "add", "default", "via", tp.ProxyOriginSide)
		run("-n", tp.OriginNS, "-6", "route", "add", "default", "via", tp.ProxyOriginSide6)
		run("netns", "exec", tp.NS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
		run("netns", "exec", tp.NS, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
	}
	for i := range links {
		run("link", "add", hostIfaces[i], "type", "veth", "peer", "name", tp.ProxyIfaces[i], "netns", tp.NS)
		run("-n", tp.NS, "addr", "add", ends[i][0]+"/24", "dev", tp.ProxyIfaces[i])
		run("-n", tp.NS, "-6", "addr", "add", ends6[i][0]+"/64", "dev", tp.ProxyIfaces[i], "nodad")
		run("-n", tp.NS, "link", "set", tp.ProxyIfaces[i], "up")
		run("addr", "add", ends[i][1]+"/24", "dev", hostIfaces[i])
		run("-6", "addr", "add", ends6[i][1]+"/64", "dev", hostIfaces[i], "nodad")
		run("link", "set", hostIfaces[i], "up")
	}
	if routed {
		run("route", "add", tp.OriginSide+"/32", "via", tp.ProxyCallerSide)
		run("-6", "route", "add", tp.OriginSide6+"/128", "via", tp.ProxyCallerSide6)
	}
	return tp
}

// Exec runs a command in the proxy's namespace and returns its output.
func (tp *Topology) Exec(prog string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", tp.NS, prog}, args...)...).CombinedOutput()
	return string(out), err
}

// ChildProxy is Caddy with the plugin in a child process in the
// topology's namespace, its admin API on a unix socket.
type ChildProxy struct {
	*Process
	// Addr is the address callers dial.
	Addr   string
	socket string
	proxy  *Proxy // renders configs
}

// ChildProxyOptions shape a child proxy.
type ChildProxyOptions struct {
	// Run names the test that calls ServeChildProxy.
	Run string
	// DropCaps runs it with no capabilities at all (setpriv), as an
	// unprivileged Caddy would be.
	DropCaps bool
	// NoFile raises the proxy's descriptor limit (prlimit), for many
	// sessions: two sockets each.
	NoFile int
	// Route, when set, replaces the srt route (the handler argument is
	// then unused): caddy-l4's own proxy handler, to compare with.
	Route map[string]any
	// Env adds "NAME=value" entries to the proxy's environment alone
	// (env), not the test's.
	Env []string
}

// childConfigEnv tells the test binary, run again, that it is the proxy
// and where its config is.
const childConfigEnv = "SRT_TEST_CHILD_PROXY_CONFIG"

// StartChildProxy runs the proxy for handler (as for StartProxy) on
// port 10080 of every address in the namespace and waits until it answers
// an SRT induction.
func (tp *Topology) StartChildProxy(t *testing.T, handler map[string]any, o ChildProxyOptions) *ChildProxy {
	t.Helper()
	dir := t.TempDir()
	cp := &ChildProxy{Addr: net.JoinHostPort(tp.ProxyCallerSide, "10080"), socket: filepath.Join(dir, "admin.sock")}
	p := &Proxy{t: t, Addr: "0.0.0.0:10080", Admin: "unix/" + cp.socket, route: o.Route}
	cp.proxy = p
	cfg := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(cfg, p.Config(handler), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(childConfigEnv, cfg)
	args := []string{"netns", "exec", tp.NS}
	if o.NoFile > 0 {
		args = append(args, "prlimit", "--nofile="+strconv.Itoa(o.NoFile), "--")
	}
	if o.DropCaps {
		args = append(args, "setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--")
	}
	if len(o.Env) > 0 {
		args = append(append(args, "env"), o.Env...)
	}
	args = append(args, os.Args[0], "-test.run=^"+o.Run+"$", "-test.v", "-test.timeout=10m")
	cp.Process = startProcess(t, false, nil, "ip", args...)
	if err := peer.WaitSRT(context.Background(), cp.Addr, 10*time.Second, cp.Exited); err != nil {
		t.Fatalf("child proxy on %s: %v; stderr:\n%s", cp.Addr, err, cp.Stderr())
	}
	return cp
}

// Reload replaces the running config with one for handler, as an
// operator does: POST /load.
func (cp *ChildProxy) Reload(handler map[string]any) error {
	_, err := adminDo(cp.client(), http.MethodPost, "http://admin/load", cp.proxy.Config(handler))
	return err
}

func (cp *ChildProxy) client() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", cp.socket)
		}},
	}
}

// Get fetches an admin API path.
func (cp *ChildProxy) Get(path string) ([]byte, error) {
	return adminDo(cp.client(), http.MethodGet, "http://admin"+path, nil)
}

// GetJSON fetches an admin API path into v.
func (cp *ChildProxy) GetJSON(path string, v any) error {
	b, err := cp.Get(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// ServeChildProxy is the body of the test StartChildProxy runs in the
// child: it skips unless it is that child; there it runs Caddy until
// SIGTERM, then stops it and runs atExit (what a process exit hook does,
// e.g. close the ebpf data path).
func ServeChildProxy(t *testing.T, atExit func() error) {
	cfg := os.Getenv(childConfigEnv)
	if cfg == "" {
		t.Skip("runs only as a child proxy")
	}
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if err := caddy.Load(b, true); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	<-stop
	if err := caddy.Stop(); err != nil {
		t.Errorf("stopping caddy: %v", err)
	}
	if atExit != nil {
		if err := atExit(); err != nil {
			t.Errorf("at exit: %v", err)
		}
	}
	fmt.Fprintln(os.Stderr, "child proxy stopped, pid "+strconv.Itoa(os.Getpid()))
}

// CPUTime is the CPU time every thread of process pid has had so far
// (the scheduler's own accounting, /proc/<pid>/task/*/schedstat, not
// tick samples).
func CPUTime(pid int) time.Duration {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	var total time.Duration
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if fields := strings.Fields(string(b)); len(fields) > 0 {
			ns, _ := strconv.ParseInt(fields[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// KsoftirqdPids lists the kernel's softirq threads, which do the network
// work no process is charged for.
func KsoftirqdPids() []int {
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	var pids []int
	for _, f := range comms {
		b, err := os.ReadFile(f)
		if err != nil || !strings.HasPrefix(string(b), "ksoftirqd/") {
			continue
		}
		pid, _ := strconv.Atoi(strings.Split(f, "/")[2])
		pids = append(pids, pid)
	}
	return pids
}
