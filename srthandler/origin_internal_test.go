package srthandler

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// exhaustFDs makes every new descriptor fail with EMFILE until the
// returned function runs.
func exhaustFDs(t *testing.T) (restore func()) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	top := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > top {
			top = n
		}
	}
	lim := old
	lim.Cur = uint64(top + 1)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var fillers []int
	for { // the holes below the limit
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fillers = append(fillers, fd)
	}
	return func() {
		for _, fd := range fillers {
			unix.Close(fd)
		}
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	}
}

// TestLocalFailureIsNotUpstreamFailure: a handshake that fails because
// this process is out of descriptors leaves the upstream healthy.
func TestLocalFailureIsNotUpstreamFailure(t *testing.T) {
	h := &Handler{HandshakeTimeout: caddy.Duration(time.Second),
		passive: passivePolicy{maxFails: 1, failDuration: 10 * time.Second}}
	up := stateOf("127.0.0.1:" + strconv.Itoa(40000+os.Getpid()%20000))
	up.acquire()
	restore := exhaustFDs(t)
	_, err := h.splice(&callerHello{hs: &wire.Handshake{SocketID: 7}, received: time.Now()}, []*upstreamState{up}, zap.NewNop())
	restore()
	if !isLocalFailure(err) {
		t.Fatalf("splice with no descriptors left: %v, want EMFILE", err)
	}
	if !up.healthy(time.Now()) {
		t.Errorf("upstream marked down for this process's own failure")
	}
}

// TestStaticUpstreamOnceDynamicKeepsHealth: an address a placeholder
// named first, then a configuration names statically, keeps one state:
// the active checks' verdict on it reaches the callers, whatever the
// placeholder's sessions do.
func TestStaticUpstreamOnceDynamicKeepsHealth(t *testing.T) {
	addr := "192.0.2.77:" + strconv.Itoa(10000+os.Getpid()%20000)
	d := dynamicStateOf(addr)
	d.acquire() // a caller through a placeholder upstream
	s := stateOf(addr)
	d.release() // that caller's session ends
	s.mu.Lock()
	s.activeDown = true // the static configuration's active checks
	s.mu.Unlock()
	if stateOf(addr).healthy(time.Now()) {
		t.Error("the static upstream lost the active checks' verdict: a fresh healthy state replaced it")
	}
	if stateOf(addr).dynamic.Load() {
		t.Error("the static upstream is still dynamic: kept out of metrics and forgotten when idle")
	}
}

// TestListenerFallbackLoggedOnce: a session that cannot have its own
// socket relays through the listener, said at Info the first time only.
func TestListenerFallbackLoggedOnce(t *testing.T) {
	fellBack.Store(false)
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	h := &Handler{}
	for range 3 {
		a, b := net.Pipe() // not UDP: no session socket can be made
		cx := layer4.WrapConnection(a, nil, zap.NewNop())
		if cl := h.openCallerLink(cx, netip.MustParseAddrPort("127.0.0.1:9"), log); cl.path != session.PathListener {
			t.Fatalf("path %v, want listener", cl.path)
		}
		a.Close()
		b.Close()
	}
	info := logs.FilterLevelExact(zap.InfoLevel).FilterMessageSnippet("relaying through the listener").Len()
	debug := logs.FilterLevelExact(zap.DebugLevel).FilterMessageSnippet("relaying through the listener").Len()
	if info != 1 || debug != 2 {
		t.Errorf("fallback logged %d times at Info and %d at Debug, want 1 and 2", info, debug)
	}
}
