package srthandler_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/srthandler"
)

// authServer is a real HTTP auth endpoint. It decides by the resource's
// first path segment: ok, deny401, deny403, err500, slow, place.
type authServer struct {
	*httptest.Server
	posts atomic.Int64
	place string // where "place/..." callers go

	mu     sync.Mutex
	bodies []map[string]any
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	a := &authServer{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.posts.Add(1)
		var body map[string]any
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&body) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.bodies = append(a.bodies, body)
		a.mu.Unlock()
		res, _ := body["resource"].(string)
		switch strings.Split(res, "/")[0] {
		case "ok", "cached":
			w.WriteHeader(http.StatusNoContent)
		case "deny401":
			w.WriteHeader(http.StatusUnauthorized)
		case "deny403":
			w.WriteHeader(http.StatusForbidden)
		case "err500":
			w.WriteHeader(http.StatusInternalServerError)
		case "slow", "slowallow":
			select {
			case <-r.Context().Done():
			case <-time.After(1500 * time.Millisecond):
			}
		case "place":
			_, _ = w.Write([]byte(`{"upstream":"udp/` + a.place + `"}`))
		case "ponder": // answers in time, but after libsrt has repeated its conclusion
			time.Sleep(700 * time.Millisecond)
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func authRoute(url string, opts map[string]any, resource string, upstream ...string) map[string]any {
	h := map[string]any{"url": url}
	for k, v := range opts {
		h[k] = v
	}
	return map[string]any{"resource": []string{resource}, "to": to(upstream...), "auth": map[string]any{"http": h}}
}

func TestAuthHTTP(t *testing.T) {
	a := startAuthServer(t)
	main := startBackend(t, "main")
	placed := startBackend(t, "placed")
	a.place = placed.Addr()
	sink := testpeer.StartSink(t)
	down := "http://127.0.0.1:" + itoa(testpeer.FreeTCPPort(t)) + "/auth"
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			authRoute(a.URL, map[string]any{"timeout": "300ms", "on_error": "allow"}, "slowallow/*", main.Addr()),
			authRoute(a.URL, map[string]any{"cache": "10s"}, "cached/*", main.Addr()),
			authRoute(down, nil, "down/*", sink.Addr),
			authRoute(a.URL, map[string]any{"timeout": "300ms"}, "ok/*", main.Addr()),
			authRoute(a.URL, map[string]any{"timeout": "300ms"}, "place/*", main.Addr()),
			// Every refusal below would reach this counting origin.
			authRoute(a.URL, map[string]any{"timeout": "300ms"}, "*", sink.Addr),
		},
	}, testpeer.Options{})

	dial := func(id string) (uint32, time.Duration) {
		t.Helper()
		start := time.Now()
		c, err := testpeer.Dial(p.Addr, id, testpeer.DialOptions{})
		took := time.Since(start)
		if err == nil {
			c.Close()
			return 0, took
		}
		code, ok := testpeer.RejectReason(err)
		if !ok {
			t.Fatalf("%q: %v", id, err)
		}
		return code, took
	}

	for _, c := range []struct {
		id   string
		want uint32
	}{
		{"#!::r=ok/a,m=publish,u=alice,s=tok1,x=y", 0},
		{"#!::r=deny401/a,m=publish", 1401},
		{"#!::r=deny403/a,m=publish", 1403},
		{"#!::r=err500/a", 1401},
		{"#!::r=slow/a", 1401},   // callback timeout, on_error reject
		{"#!::r=slowallow/a", 0}, // callback timeout, on_error allow
		{"#!::r=down/a", 1401},   // nothing listening
		{"#!::r=place/a,m=publish", 0},
	} {
		got, took := dial(c.id)
		if got != c.want {
			t.Errorf("%q: got reason %d, want %d", c.id, got, c.want)
		}
		if c.want != 0 && took < 300*time.Millisecond {
			t.Errorf("%q: refused after %v, before the damping delay", c.id, took)
		}
		if took > 2*time.Second {
			t.Errorf("%q: answered after %v, past handshake_timeout", c.id, took)
		}
	}
	if n := sink.Datagrams(); n != 0 {
		t.Errorf("the origin of refused callers got %d datagrams", n)
	}
	waitFor(t, 2*time.Second, "admitted callers at their origins", func() bool {
		return len(main.Conns()) == 2 && len(placed.Conns()) == 1
	})
	if got := placed.Conns()[0].StreamID; got != "#!::r=place/a,m=publish" {
		t.Errorf("the placed origin got %q", got)
	}

	// The callback heard the raw ID, its fields, the caller and the listener.
	a.mu.Lock()
	first := a.bodies[0]
	a.mu.Unlock()
	for k, want := range map[string]any{
		"stream_id": "#!::r=ok/a,m=publish,u=alice,s=tok1,x=y", "resource": "ok/a", "mode": "publish",
		"user": "alice", "session": "tok1", "type": "stream", "listener": p.Addr,
		"keys": map[string]any{"x": "y"},
	} {
		if g, _ := json.Marshal(first[k]); string(g) != mustJSON(want) {
			t.Errorf("callback body %s = %s, want %s", k, g, mustJSON(want))
		}
	}
	if c, _ := first["caller"].(string); !strings.HasPrefix(c, "127.0.0.1:") {
		t.Errorf("callback body caller = %q", c)
	}

	// A cached answer: the second caller is not asked about.
	before := a.posts.Load()
	for range 3 {
		if got, _ := dial("#!::r=cached/a,m=publish"); got != 0 {
			t.Fatalf("cached caller refused with %d", got)
		}
	}
	if n := a.posts.Load() - before; n != 1 {
		t.Errorf("three callers with one stream ID and IP: %d POSTs, want 1", n)
	}
}

// TestInteropAuthHTTP: libsrt callers read the callback's refusals with
// srt_getrejectreason(), and a callback slower than libsrt's 250 ms
// conclusion repeats is asked once per caller.
func TestInteropAuthHTTP(t *testing.T) {
	a := startAuthServer(t)
	b := startBackend(t, "b")
	sink := testpeer.StartSink(t)
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			authRoute(a.URL, nil, "ponder/*", b.Addr()),
			authRoute(a.URL, nil, "*", sink.Addr),
		},
	}, testpeer.Options{})
	for _, c := range []struct {
		id   string
		want int
	}{
		{"#!::r=deny401/x", 1401}, // SRT_REJX_UNAUTHORIZED
		{"#!::r=deny403/x", 1403}, // SRT_REJX_FORBIDDEN
	} {
		r := testpeer.RunCaller(t, p.Addr, c.id, testpeer.CallerOptions{})
		if len(r.Attempts) != 1 || !r.Attempts[0].Rejected || r.Attempts[0].Reason != c.want {
			t.Errorf("stream ID %q: %v, want rejected with reason %d; output:\n%s%s", c.id, r.Attempts, c.want, r.Output, r.Stderr)
		}
	}
	before := a.posts.Load()
	r := testpeer.RunCaller(t, p.Addr, "#!::r=ponder/x", testpeer.CallerOptions{})
	if len(r.Attempts) != 1 || !r.Attempts[0].Connected {
		t.Errorf("slow callback: %v; output:\n%s%s", r.Attempts, r.Output, r.Stderr)
	}
	if n := a.posts.Load() - before; n != 1 {
		t.Errorf("one libsrt caller repeating its conclusion: %d POSTs, want 1", n)
	}
	if n := sink.Datagrams(); n != 0 {
		t.Errorf("the origin of refused callers got %d datagrams", n)
	}
}

func TestAuthTimeoutWithinHandshakeTimeout(t *testing.T) {
	h := &srthandler.Handler{
		HandshakeTimeout: caddy.Duration(time.Second),
		Routes: []*srthandler.Route{{To: []string{"udp/127.0.0.1:1"},
			Auth: &srthandler.Auth{HTTP: &srthandler.AuthHTTP{URL: "http://x/", Timeout: caddy.Duration(time.Second)}}}},
	}
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "handshake_timeout") {
		t.Errorf("auth timeout = handshake_timeout: Validate said %v", err)
	}
	h.Routes[0].Auth.HTTP.Timeout = caddy.Duration(500 * time.Millisecond)
	if err := h.Validate(); err != nil {
		t.Errorf("auth timeout under handshake_timeout: %v", err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestAuthJWTEndToEnd: through a real Caddy, a gosrt caller with a valid
// token in s= reaches the origin; a forged, expired or too narrow one
// does not, and nothing reaches the origin for it.
func TestAuthJWTEndToEnd(t *testing.T) {
	secret := []byte("end-to-end-secret-of-32-bytes-000")
	b := startBackend(t, "b")
	sink := testpeer.StartSink(t)
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			map[string]any{"resource": []string{"live/*"}, "to": to(b.Addr()),
				"auth": map[string]any{"jwt": map[string]any{"key": string(secret)}}},
			map[string]any{"to": to(sink.Addr),
				"auth": map[string]any{"jwt": map[string]any{"key": string(secret)}}},
		},
	}, testpeer.Options{})
	token := func(key []byte, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hour := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct {
		id   string
		want uint32
	}{
		{"#!::r=live/a,m=publish,s=" + token(secret, jwt.MapClaims{"exp": hour, "srt_resource": "live/a"}), 0},
		{"#!::r=live/a,m=publish,s=" + token([]byte("forged"), jwt.MapClaims{"exp": hour}), 1401},
		{"#!::r=live/a,m=publish,s=" + token(secret, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}), 1401},
		{"#!::r=other/a,m=publish,s=" + token(secret, jwt.MapClaims{"exp": hour, "srt_resource": "live/*"}), 1403},
		{"#!::r=other/a,m=publish,s=" + token(secret, jwt.MapClaims{"exp": hour, "srt_mode": "request"}), 1403},
		{"#!::r=other/a,m=publish", 1401},
	} {
		conn, err := testpeer.Dial(p.Addr, c.id, testpeer.DialOptions{})
		if err == nil {
			conn.Close()
		}
		got, _ := testpeer.RejectReason(err)
		if (c.want == 0 && err != nil) || got != c.want {
			t.Errorf("%q: %v, want reason %d", c.id, err, c.want)
		}
	}
	waitFor(t, 2*time.Second, "the admitted caller at the origin", func() bool { return len(b.Conns()) == 1 })
	if n := sink.Datagrams(); n != 0 {
		t.Errorf("the origin of refused callers got %d datagrams", n)
	}
}

// TestAuthConnectTimeReport logs what an auth http route adds to a libsrt
// caller's connect time: the median of 100 connects with and without it,
// in one run, the callback on loopback and uncached. It reports; it does
// not judge.
func TestAuthConnectTimeReport(t *testing.T) {
	const repeat = 100
	a := startAuthServer(t)
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			authRoute(a.URL, nil, "ok/*", b.Addr()),
			map[string]any{"resource": []string{"none/*"}, "to": to(b.Addr())},
		},
	}, testpeer.Options{})
	none := medianConnect(t, "no auth", p.Addr, "#!::r=none/x", repeat)
	posts := a.posts.Load()
	auth := medianConnect(t, "auth http", p.Addr, "#!::r=ok/x", repeat)
	t.Logf("auth http adds %v to the median connect time (%d callbacks)", auth-none, a.posts.Load()-posts)
}
