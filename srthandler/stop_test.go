package srthandler_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// startLiveStream connects a srt-live-transmit caller through p to origin
// and keeps it sending until the test ends or it exits.
func startLiveStream(t *testing.T, p *testpeer.Proxy, origin *testpeer.SLTListener) *testpeer.SLTCaller {
	t.Helper()
	c := testpeer.StartSLTCaller(t, p.Addr, "live/stop", testpeer.SLTOptions{})
	if !c.Connected() {
		t.Fatalf("caller did not connect; stderr:\n%s", c.Stderr())
	}
	var stop atomic.Bool
	t.Cleanup(func() { stop.Store(true) })
	go feedUntilExit(c, &stop)
	waitFor(t, 5*time.Second, "the origin to accept the stream", origin.Accepted)
	return c
}

// TestStopEndsSessions: caddy.Stop() (what `caddy stop` and SIGTERM end
// with) sends SHUTDOWN both ways: the libsrt caller and the libsrt origin
// both see their connection closed within a second, and the port is free.
func TestStopEndsSessions(t *testing.T) {
	origin := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
	p := testpeer.StartProxy(t, map[string]any{"routes": []any{map[string]any{"to": to(origin.Addr)}}}, testpeer.Options{})
	c := startLiveStream(t, p, origin)
	time.Sleep(200 * time.Millisecond)

	stopped := time.Now()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("caddy.Stop returned after %v", time.Since(stopped))
	bothClosedWithin(t, time.Second, stopped, "caddy.Stop", c.Process, origin.Process)
	// A plain bind (no SO_REUSEPORT) fails while any socket holds the port.
	l, err := net.ListenPacket("udp", p.Addr)
	if err != nil {
		t.Fatalf("the listener's port is still bound after caddy.Stop: %v", err)
	}
	l.Close()
}

// TestStopGracePeriod: with grace_period, a live stream goes on to its end
// after caddy.Stop while a new caller is refused with overload (1402),
// answered rather than left to time out.
func TestStopGracePeriod(t *testing.T) {
	origin := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
	p := testpeer.StartProxy(t, map[string]any{
		"grace_period": "5s",
		"routes":       []any{map[string]any{"to": to(origin.Addr)}},
	}, testpeer.Options{})
	live := testpeer.StartSLTCaller(t, p.Addr, "live/grace", testpeer.SLTOptions{})
	if !live.Connected() {
		t.Fatalf("caller did not connect; stderr:\n%s", live.Stderr())
	}
	data := interopPayload(600)
	fed := make(chan error, 1)
	go func() { fed <- live.Feed(data, 1316, 2*time.Millisecond) }()
	waitFor(t, 5*time.Second, "the origin to accept the stream", origin.Accepted)

	stopped := time.Now()
	done := make(chan struct{})
	go func() { _ = caddy.Stop(); close(done) }()
	time.Sleep(100 * time.Millisecond)

	res := testpeer.RunCaller(t, p.Addr, "live/late", testpeer.CallerOptions{})
	if len(res.Attempts) != 1 || !res.Attempts[0].Rejected || res.Attempts[0].Reason != 1402 {
		t.Errorf("new caller during the grace period: %v, want rejected with 1402", res.Attempts)
	} else if t.Logf("new caller during the grace period: rejected with 1402 in %v", res.Attempts[0].Took); res.Attempts[0].Took > time.Second {
		t.Errorf("new caller during the grace period answered after %v", res.Attempts[0].Took)
	}

	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	time.Sleep(interopSettle)
	_ = live.Stop()
	interopCheckListener(t, origin, data)
	select {
	case <-done:
		t.Logf("caddy.Stop returned %v after it was called, once the last session ended", time.Since(stopped))
	case <-time.After(6 * time.Second):
		t.Fatal("caddy.Stop did not return after the grace period")
	}
}

// stopHelperEnv carries the config of a Caddy that TestStopHelperProcess
// runs in a process of its own.
const stopHelperEnv = "SRT_TEST_CADDY_CONFIG"

// TestStopHelperProcess is not a test: run by TestSIGTERMEndsSessions in a
// child process, it is Caddy as `caddy run` runs it, signal handling
// included.
func TestStopHelperProcess(t *testing.T) {
	cfg := os.Getenv(stopHelperEnv)
	if cfg == "" {
		t.Skip("helper process only")
	}
	if err := caddy.Load([]byte(cfg), true); err != nil {
		fmt.Fprintln(os.Stderr, "loading config:", err)
		os.Exit(3)
	}
	caddy.TrapSignals()
	select {} // SIGTERM ends the process, through caddy's exitProcess
}

// TestSIGTERMEndsSessions: SIGTERM to a Caddy process (what `caddy stop`
// and service managers end with) sends SHUTDOWN both ways before the
// process exits: the libsrt caller and origin see their connection closed
// within a second.
//
// Also after a reload to a configuration without any srt handler: the
// reload ends nothing, and Caddy's exit hook ends the sessions no handler
// is left to end.
func TestSIGTERMEndsSessions(t *testing.T) {
	t.Run("srt config", func(t *testing.T) { testSIGTERMEndsSessions(t, false) })
	t.Run("after a reload without srt", func(t *testing.T) { testSIGTERMEndsSessions(t, true) })
}

func testSIGTERMEndsSessions(t *testing.T, reloadWithoutSRT bool) {
	origin := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
	p := &testpeer.Proxy{Addr: "127.0.0.1:" + strconv.Itoa(testpeer.FreeUDPPort(t))}
	if reloadWithoutSRT {
		p.Admin = "127.0.0.1:" + strconv.Itoa(testpeer.FreeTCPPort(t))
	}
	cfg := p.Config(map[string]any{"routes": []any{map[string]any{"to": to(origin.Addr)}}})
	cmd := exec.Command(os.Args[0], "-test.run=^TestStopHelperProcess$")
	cmd.Env = append(os.Environ(), stopHelperEnv+"="+string(cfg))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("caddy process stderr:\n%s", stderr.String())
		}
	})
	if err := testpeer.WaitSRTListener(p.Addr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c := startLiveStream(t, p, origin)
	time.Sleep(200 * time.Millisecond)
	if reloadWithoutSRT {
		noSRT := fmt.Sprintf(`{"admin":{"listen":%q,"config":{"persist":false}}}`, p.Admin)
		resp, err := http.Post("http://"+p.Admin+"/load", "application/json", strings.NewReader(noSRT))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("reloading without srt: %s", resp.Status)
		}
		time.Sleep(500 * time.Millisecond)
		if c.Exited() || origin.Exited() {
			t.Fatalf("a reload ended the session (caller exited: %v, origin exited: %v)", c.Exited(), origin.Exited())
		}
	}

	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	bothClosedWithin(t, time.Second, signalled, "SIGTERM", c.Process, origin.Process)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("caddy exited with %v", err)
		}
		t.Logf("caddy exited %v after SIGTERM", time.Since(signalled))
	case <-time.After(5 * time.Second):
		t.Error("caddy did not exit within 5s of SIGTERM")
	}
}

// bothClosedWithin checks that the caller and the origin saw their
// connection closed within d of what happened at since.
func bothClosedWithin(t *testing.T, d time.Duration, since time.Time, what string, caller, origin *testpeer.Process) {
	t.Helper()
	for _, peer := range []struct {
		name string
		p    *testpeer.Process
	}{{"caller", caller}, {"origin", origin}} {
		if exited, _ := peer.p.Wait(time.Until(since.Add(3 * d))); !exited {
			t.Fatalf("%s still connected %v after %s", peer.name, time.Since(since), what)
		}
		took := time.Since(since)
		t.Logf("%s saw the connection closed %v after %s", peer.name, took, what)
		if took > d {
			t.Errorf("%s saw the connection closed after %v, want within %v", peer.name, took, d)
		}
	}
}
