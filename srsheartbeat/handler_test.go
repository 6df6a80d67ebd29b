package srsheartbeat

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/fleet"
)

const srs7 = `{"device_id":"origin9","ip":"127.0.0.1","server":"vid-e12689h","service":"7cl35azv","pid":"1656","rtmp":["11945"],"http":["18090"],"api":["11995"],"srt":["udp://0.0.0.0:9209"]}`

type passedOn struct{ called bool }

func (p *passedOn) ServeHTTP(http.ResponseWriter, *http.Request) error { p.called = true; return nil }

func serve(t *testing.T, h *Handler, method, path, body string) (int, bool) {
	t.Helper()
	next := &passedOn{}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)), next); err != nil {
		t.Fatal(err)
	}
	return w.Code, next.called
}

func TestServeHTTP(t *testing.T) {
	reg := fleet.NewRegistry(2)
	h := &Handler{Expire: caddy.Duration(time.Minute), logger: zap.NewNop(), registry: reg}
	if _, next := serve(t, h, http.MethodPost, "/other", srs7); !next {
		t.Error("a request to another path was not passed on")
	}
	if code, _ := serve(t, h, http.MethodGet, Path, ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", code)
	}
	for _, body := range []string{"", "{", `{"server":"x","ip":"127.0.0.1"}`, strings.Repeat("x", fleet.MaxHeartbeatBytes+10)} {
		if code, _ := serve(t, h, http.MethodPost, Path, body); code != http.StatusBadRequest {
			t.Errorf("body %.20q: %d, want 400", body, code)
		}
	}
	if live := reg.Live(time.Now()); len(live) != 0 {
		t.Fatalf("bad heartbeats registered %v", live)
	}
	if code, _ := serve(t, h, http.MethodPost, Path, srs7); code != http.StatusOK {
		t.Fatalf("SRS 7 heartbeat: %d, want 200", code)
	}
	live := reg.Live(time.Now())
	if len(live) != 1 || live[0].SRT[0] != netip.MustParseAddrPort("127.0.0.1:9209") {
		t.Fatalf("registered %+v", live)
	}
	release := reg.Serve([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	defer release()
	if code, _ := serve(t, h, http.MethodPost, Path, strings.Replace(srs7, "vid-e12689h", "other", 1)); code != http.StatusForbidden {
		t.Errorf("origin outside upstream_allow: %d, want 403", code)
	}
	for i, id := range []string{"a", "b"} {
		body := strings.NewReplacer("vid-e12689h", id, "127.0.0.1", "10.0.0.1").Replace(srs7)
		want := http.StatusOK
		if i == 1 {
			want = http.StatusServiceUnavailable // the registry holds two
		}
		if code, _ := serve(t, h, http.MethodPost, Path, body); code != want {
			t.Errorf("origin %s: %d, want %d", id, code, want)
		}
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"srs_heartbeat":                        0,
		"srs_heartbeat {\n\texpire 10s\n}":     10 * time.Second,
		"srs_heartbeat {\n\texpire 1m30s\n}\n": 90 * time.Second,
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if time.Duration(h.Expire) != want {
			t.Errorf("%q: expire %v, want %v", in, time.Duration(h.Expire), want)
		}
	}
	for _, in := range []string{"srs_heartbeat now", "srs_heartbeat {\n\texpire\n}", "srs_heartbeat {\n\texpire soon\n}", "srs_heartbeat {\n\tttl 1s\n}"} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}
