package srthandler_test

// The helpers the srthandler_test files share: a test file keeps only the
// helpers no other file uses. Tests are named after the file they test:
// foo_test.go runs them through a real Caddy (package srthandler_test);
// in-package tests of the same file, where it has both kinds, are in
// foo_internal_test.go (route_test.go and lb_test.go are in-package, and
// route_e2e_test.go goes through Caddy).

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

func startBackend(t *testing.T, name string) *srtbackend.Server {
	t.Helper()
	return startBackendAt(t, name, "127.0.0.1:0")
}

// startBackendAt starts an origin on a given address.
func startBackendAt(t *testing.T, name, addr string) *srtbackend.Server {
	t.Helper()
	b := &srtbackend.Server{Name: name}
	if err := b.Listen(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func to(addrs ...string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = "udp/" + a
	}
	return out
}

func streamIDs(b *srtbackend.Server) []string {
	var ids []string
	for _, c := range b.Conns() {
		ids = append(ids, c.StreamID)
	}
	slices.Sort(ids)
	return ids
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var dataPaths = []string{"socket", "listener"}

// settle waits until the plugin holds no session and runs no goroutine,
// and the process's sockets are back to want.
func settle(t *testing.T, sockets int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		live, ours, socks := session.Default.Len(), testpeer.OurGoroutines(), testpeer.OpenSockets(t)
		if live == 0 && ours == 0 && socks <= sockets {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after all sessions ended: %d sessions live, %d plugin goroutines, %d sockets (baseline %d)\n%s",
				live, ours, socks, sockets, strings.Join(testpeer.OurGoroutineStacks(), "\n\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// medianConnect connects a libsrt caller repeat times (an even number) to
// addr with stream ID id and returns the median connect time.
func medianConnect(t *testing.T, name, addr, id string, repeat int) time.Duration {
	t.Helper()
	r := testpeer.RunCaller(t, addr, id, testpeer.CallerOptions{Repeat: repeat})
	var took []time.Duration
	for _, a := range r.Attempts {
		if !a.Connected {
			t.Fatalf("%s: attempt %d: %v; output:\n%s%s", name, len(took)+1, a, r.Output, r.Stderr)
		}
		took = append(took, a.Took)
	}
	if len(took) != repeat {
		t.Fatalf("%s: %d attempts reported, want %d; output:\n%s%s", name, len(took), repeat, r.Output, r.Stderr)
	}
	slices.Sort(took)
	m := (took[repeat/2-1] + took[repeat/2]) / 2
	t.Logf("%s: median connect time %v (min %v, max %v) over %d connects", name, m, took[0], took[repeat-1], repeat)
	return m
}

// adminGetter is a Caddy's admin API, in this process or another.
type adminGetter interface {
	Get(path string) ([]byte, error)
}

// adminJSON GETs an admin API path and decodes its JSON answer.
func adminJSON[T any](t *testing.T, p adminGetter, path string) T {
	t.Helper()
	b, err := p.Get(path)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
	return out
}
