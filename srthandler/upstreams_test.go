package srthandler_test

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/srthandler"
)

func upstreamsOf(t *testing.T, p *testpeer.Proxy) []srthandler.UpstreamView {
	t.Helper()
	return adminJSON[[]srthandler.UpstreamView](t, p, "/srt/upstreams")
}

// addressesFrom lists the upstreams that came from source.
func addressesFrom(views []srthandler.UpstreamView, source string) []string {
	var out []string
	for _, v := range views {
		if slices.Contains(v.Sources, source) {
			out = append(out, v.Address)
		}
	}
	slices.Sort(out)
	return out
}

// publish connects a gosrt publisher and sends one packet.
func publish(t *testing.T, proxy, id string) func() {
	t.Helper()
	conn, err := testpeer.Dial(proxy, id, testpeer.DialOptions{})
	if err != nil {
		t.Fatalf("dial %q: %v", id, err)
	}
	if _, err := conn.Write(bytes.Repeat([]byte{0x47}, 1316)); err != nil {
		t.Fatalf("write %q: %v", id, err)
	}
	return func() {
		if _, err := conn.Write(bytes.Repeat([]byte{0x47}, 1316)); err != nil {
			t.Errorf("write %q again: %v", id, err)
		}
	}
}

func rejection(t *testing.T, proxy, id string) (uint32, time.Duration) {
	t.Helper()
	start := time.Now()
	conn, err := testpeer.Dial(proxy, id, testpeer.DialOptions{Timeout: 3 * time.Second})
	took := time.Since(start)
	if err == nil {
		conn.Close()
		t.Fatalf("%q was accepted", id)
	}
	code, ok := testpeer.RejectReason(err)
	if !ok {
		t.Fatalf("%q: not a rejection: %v", id, err)
	}
	return code, took
}

// TestDynamicA: upstreams from A records that change while streams live.
func TestDynamicA(t *testing.T) {
	port := testpeer.FreeUDPPort(t)
	addr := func(ip string) string { return ip + ":" + strconv.Itoa(port) }
	first := startBackendAt(t, "first", addr("127.0.0.2"))
	second := startBackendAt(t, "second", addr("127.0.0.3"))
	dns := testpeer.StartDNS(t)
	dns.Set(t, "origins.test", "origins.test. 1 IN A 127.0.0.2", "origins.test. 1 IN AAAA ::1")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{
			"lb_policy": "first",
			"dynamic": map[string]any{"source": "a", "name": "origins.test", "port": strconv.Itoa(port),
				"refresh": int64(200 * time.Millisecond), "resolvers": []string{dns.Addr}},
		}},
	}, testpeer.Options{Admin: true})

	v6 := "[::1]:" + strconv.Itoa(port)
	waitFor(t, 3*time.Second, "the first answer", func() bool {
		return slices.Equal(addressesFrom(upstreamsOf(t, p), "dns"), []string{addr("127.0.0.2"), v6})
	})
	// ::1 has no origin: the policy's first choice is the IPv4 one by
	// address order, so no caller depends on it.
	again := publish(t, p.Addr, "#!::r=live/a,m=publish")
	waitFor(t, 5*time.Second, "live/a at the first origin", func() bool { return first.Published("live/a") > 0 })

	// The fleet changes: the first origin leaves DNS, the second comes.
	dns.Set(t, "origins.test", "origins.test. 1 IN A 127.0.0.3")
	waitFor(t, 3*time.Second, "the new set", func() bool {
		return slices.Equal(addressesFrom(upstreamsOf(t, p), "dns"), []string{addr("127.0.0.3")})
	})
	publish(t, p.Addr, "#!::r=live/b,m=publish")
	waitFor(t, 5*time.Second, "live/b at the second origin", func() bool { return second.Published("live/b") > 0 })
	// The removed origin drains: its live stream goes on.
	before := first.Published("live/a")
	again()
	waitFor(t, 5*time.Second, "live/a still flowing to the removed origin", func() bool { return first.Published("live/a") > before })
	if views := upstreamsOf(t, p); !slices.ContainsFunc(views, func(v srthandler.UpstreamView) bool {
		return v.Address == addr("127.0.0.2") && len(v.Sources) == 0 && v.Sessions == 1
	}) {
		t.Errorf("the draining origin is not listed with its session and no source: %+v", views)
	}

	// Lookups fail: the last good set stays, and the metric says so.
	series := func(result string) float64 {
		return srtSeries(t, p)[`caddy_layer4_srt_dynamic_lookups_total{name="origins.test",result="`+result+`",source="a"}`]
	}
	if ok := series("ok"); ok < 2 {
		t.Errorf("dynamic_lookups_total{result=ok} = %v after two answers", ok)
	}
	failedBefore := series("error")
	dns.Fail(true)
	time.Sleep(600 * time.Millisecond) // three refreshes
	publish(t, p.Addr, "#!::r=live/c,m=publish")
	waitFor(t, 5*time.Second, "live/c at the second origin while DNS fails", func() bool { return second.Published("live/c") > 0 })
	if got := addressesFrom(upstreamsOf(t, p), "dns"); !slices.Equal(got, []string{addr("127.0.0.3")}) {
		t.Errorf("set while lookups fail = %v", got)
	}
	if failed := series("error") - failedBefore; failed < 1 {
		t.Errorf("dynamic_lookups_total{result=error} grew by %v while lookups failed", failed)
	}
}

// TestDynamicSRV: host and port from SRV records, targets resolved
// before any caller needs them.
func TestDynamicSRV(t *testing.T) {
	a := startBackend(t, "a")
	b := startBackend(t, "b")
	port := func(s *srtbackend.Server) string { return s.Addr()[strings.LastIndexByte(s.Addr(), ':')+1:] }
	dns := testpeer.StartDNS(t)
	dns.Set(t, "_srt._udp.origins.test", "_srt._udp.origins.test. 1 IN SRV 10 10 "+port(a)+" a.origins.test.",
		"_srt._udp.origins.test. 1 IN SRV 10 10 "+port(b)+" b.origins.test.")
	dns.Set(t, "a.origins.test", "a.origins.test. 1 IN A 127.0.0.1")
	dns.Set(t, "b.origins.test", "b.origins.test. 1 IN A 127.0.0.1")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{
			"lb_policy": "round_robin", // every target gets callers, whatever the ports hash to
			"dynamic": map[string]any{"source": "srv", "name": "_srt._udp.origins.test",
				"refresh": int64(200 * time.Millisecond), "resolvers": []string{dns.Addr}},
		}},
	}, testpeer.Options{Admin: true})
	want := []string{a.Addr(), b.Addr()}
	slices.Sort(want)
	waitFor(t, 3*time.Second, "both SRV targets", func() bool {
		return slices.Equal(addressesFrom(upstreamsOf(t, p), "dns"), want)
	})
	for i := range 8 {
		publish(t, p.Addr, fmt.Sprintf("#!::r=live/%d,m=publish", i))
	}
	waitFor(t, 5*time.Second, "eight publishers", func() bool { return len(a.Conns())+len(b.Conns()) == 8 })
	if len(a.Conns()) == 0 || len(b.Conns()) == 0 {
		t.Errorf("round_robin over two SRV targets put %d and %d streams", len(a.Conns()), len(b.Conns()))
	}
}

// TestDynamicNeverWaitsOnDNS: a resolver that never answers leaves the
// route without upstreams, and its callers get down (1503) at once, not
// after a lookup's timeout.
func TestDynamicNeverWaitsOnDNS(t *testing.T) {
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{
			"dynamic": map[string]any{"source": "a", "name": "origins.test", "port": "10080",
				"resolvers": []string{testpeer.StallingResolver(t)}},
		}},
	}, testpeer.Options{})
	for range 3 {
		code, took := rejection(t, p.Addr, "#!::r=live/a,m=publish")
		if code != 1503 {
			t.Fatalf("rejected with %d, want 1503", code)
		}
		// A lookup here would take its 5 s timeout.
		if took > time.Second {
			t.Fatalf("rejection took %v: the handshake waited on DNS", took)
		}
	}
}

func postHeartbeat(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func heartbeatApp(listen string, expire time.Duration) map[string]any {
	return map[string]any{"servers": map[string]any{"heartbeats": map[string]any{
		"listen": []string{listen},
		"routes": []any{map[string]any{"handle": []any{map[string]any{"handler": "srs_heartbeat", "expire": int64(expire)}}}},
	}}}
}

// TestDynamicSRS: SRS origins join by heartbeat, serve callers, and
// leave when their heartbeats stop.
func TestDynamicSRS(t *testing.T) {
	origin := startBackend(t, "origin9")
	port := origin.Addr()[strings.LastIndexByte(origin.Addr(), ':')+1:]
	web := "127.0.0.1:" + strconv.Itoa(testpeer.FreeTCPPort(t))
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{"dynamic": map[string]any{"source": "srs"}}},
	}, testpeer.Options{Admin: true, Apps: map[string]any{"http": heartbeatApp(web, time.Second)}})
	url := "http://" + web + "/api/v1/srs/register"

	if code, _ := rejection(t, p.Addr, "#!::r=live/a,m=publish"); code != 1503 {
		t.Fatalf("before any heartbeat: rejected with %d, want 1503", code)
	}
	// What SRS 7 posts, with this test's origin port.
	hb := `{"device_id":"origin9","ip":"127.0.0.1","server":"vid-e12689h","service":"7cl35azv","pid":"1656","rtmp":["11945"],"http":["18090"],"api":["11995"],"srt":["udp://0.0.0.0:` + port + `"]}`
	if code := postHeartbeat(t, url, hb); code != http.StatusOK {
		t.Fatalf("heartbeat: HTTP %d", code)
	}
	waitFor(t, 3*time.Second, "the origin in the pool", func() bool {
		return slices.Equal(addressesFrom(upstreamsOf(t, p), "srs"), []string{origin.Addr()})
	})
	publish(t, p.Addr, "#!::r=live/a,m=publish")
	waitFor(t, 5*time.Second, "live/a at the origin", func() bool { return origin.Published("live/a") > 0 })

	for name, body := range map[string]string{
		"not json": `{"server":`, "no srt": `{"server":"x","ip":"127.0.0.1"}`, "no ip": `{"server":"x","srt":["9000"]}`,
	} {
		if code := postHeartbeat(t, url, body); code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", name, code)
		}
	}
	if got := addressesFrom(upstreamsOf(t, p), "srs"); !slices.Equal(got, []string{origin.Addr()}) {
		t.Errorf("bad heartbeats changed the pool: %v", got)
	}
	// Heartbeats stop: the origin leaves once expire has passed.
	waitFor(t, 4*time.Second, "the origin to expire", func() bool { return len(addressesFrom(upstreamsOf(t, p), "srs")) == 0 })
	if code, _ := rejection(t, p.Addr, "#!::r=live/b,m=publish"); code != 1503 {
		t.Fatalf("after expiry: rejected with %d, want 1503", code)
	}
}

// TestDynamicSRSAllowlist: heartbeats from outside upstream_allow are
// refused and change nothing.
func TestDynamicSRSAllowlist(t *testing.T) {
	web := "127.0.0.1:" + strconv.Itoa(testpeer.FreeTCPPort(t))
	p := testpeer.StartProxy(t, map[string]any{
		"upstream_allow": []string{"10.0.0.0/8"},
		"routes":         []any{map[string]any{"dynamic": map[string]any{"source": "srs"}}},
	}, testpeer.Options{Admin: true, Apps: map[string]any{"http": heartbeatApp(web, 30*time.Second)}})
	url := "http://" + web + "/api/v1/srs/register"
	if code := postHeartbeat(t, url, `{"server":"outside","ip":"127.0.0.1","srt":["udp://0.0.0.0:9000"]}`); code != http.StatusForbidden {
		t.Fatalf("heartbeat from outside upstream_allow: HTTP %d, want 403", code)
	}
	if code := postHeartbeat(t, url, `{"server":"inside","ip":"10.1.2.3","srt":["udp://0.0.0.0:9000"]}`); code != http.StatusOK {
		t.Fatalf("heartbeat from inside upstream_allow: HTTP %d, want 200", code)
	}
	waitFor(t, 3*time.Second, "the allowed origin", func() bool {
		return slices.Equal(addressesFrom(upstreamsOf(t, p), "srs"), []string{"10.1.2.3:9000"})
	})
}

// TestDynamicPoolsStopWithTheirConfig: a reload replaces each route's
// refresh goroutine, and stopping Caddy ends them all, stalled lookups
// included.
func TestDynamicPoolsStopWithTheirConfig(t *testing.T) {
	t.Run("running", func(t *testing.T) {
		handler := map[string]any{"routes": []any{
			map[string]any{"resource": []string{"a/*"}, "dynamic": map[string]any{"source": "a", "name": "origins.test", "port": "10080",
				"refresh": int64(100 * time.Millisecond), "resolvers": []string{testpeer.StallingResolver(t)}}},
			map[string]any{"dynamic": map[string]any{"source": "srs"}},
		}}
		p := testpeer.StartProxy(t, handler, testpeer.Options{Admin: true})
		waitFor(t, 3*time.Second, "two refresh goroutines", func() bool { return countPools() == 2 })
		for range 3 {
			if err := p.Reload(handler); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 3*time.Second, "the old configs' goroutines to end", func() bool { return countPools() == 2 })
	})
	// Sockets are not counted: caddy.Stop leaves the last admin listener
	// (and a client's keep-alive connection to it) open.
	settle(t, 1<<30)
}

// countPools counts the dynamic sources' refresh goroutines.
func countPools() int {
	n := 0
	for _, g := range testpeer.OurGoroutineStacks() {
		if strings.Contains(g, "dynamicPool).run") {
			n++
		}
	}
	return n
}
