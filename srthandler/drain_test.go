package srthandler_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// TestDrain: POST /srt/drain refuses new callers with down (1503), through
// a reload, while a live libsrt stream runs to its end untouched; DELETE
// admits callers again.
func TestDrain(t *testing.T) {
	origin := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
	handler := map[string]any{"routes": []any{map[string]any{"to": to(origin.Addr)}}}
	p := testpeer.StartProxy(t, handler, testpeer.Options{Admin: true})
	t.Cleanup(func() { _, _ = p.Delete("/srt/drain") })

	live := testpeer.StartSLTCaller(t, p.Addr, "live/drain", testpeer.SLTOptions{})
	if !live.Connected() {
		t.Fatalf("live caller did not connect; stderr:\n%s", live.Stderr())
	}
	data := interopPayload(800)
	fed := make(chan error, 1)
	go func() { fed <- live.Feed(data, 1316, 2*time.Millisecond) }()

	b, err := p.Post("/srt/drain")
	if err != nil || !bytes.Contains(b, []byte(`"draining":true`)) {
		t.Fatalf("POST /srt/drain: %s, %v", b, err)
	}
	if b, err := p.Get("/srt/drain"); err != nil || !bytes.Contains(b, []byte(`"draining":true`)) {
		t.Errorf("GET /srt/drain: %s, %v", b, err)
	}
	resp, err := http.Get("http://" + p.Admin + "/srt/sessions")
	if err != nil {
		t.Fatal(err)
	}
	var sessions []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&sessions)
	resp.Body.Close()
	if resp.Header.Get("Srt-Draining") != "true" || len(sessions) != 1 {
		t.Errorf("GET /srt/sessions while draining: Srt-Draining %q, %d sessions; want true and 1", resp.Header.Get("Srt-Draining"), len(sessions))
	}
	if m, err := p.Get("/metrics"); err != nil || !strings.Contains(string(m), "caddy_layer4_srt_draining 1") {
		t.Errorf("metrics while draining lack caddy_layer4_srt_draining 1 (%v)", err)
	}

	refused := func(when string) {
		t.Helper()
		res := testpeer.RunCaller(t, p.Addr, "live/other", testpeer.CallerOptions{})
		if len(res.Attempts) != 1 || !res.Attempts[0].Rejected || res.Attempts[0].Reason != 1503 {
			t.Errorf("new caller %s: %v, want rejected with 1503", when, res.Attempts)
		} else if t.Logf("new caller %s: rejected with 1503 in %v", when, res.Attempts[0].Took); res.Attempts[0].Took > time.Second {
			t.Errorf("new caller %s answered after %v", when, res.Attempts[0].Took)
		}
	}
	refused("while draining")
	if err := p.Reload(handler); err != nil {
		t.Fatal(err)
	}
	refused("after a reload")

	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	time.Sleep(interopSettle)
	_ = live.Stop()
	interopCheckListener(t, origin, data)

	if _, err := p.Delete("/srt/drain"); err != nil {
		t.Fatal(err)
	}
	next := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
	if err := p.Reload(map[string]any{"routes": []any{map[string]any{"to": to(next.Addr)}}}); err != nil {
		t.Fatal(err)
	}
	if res := testpeer.RunCaller(t, p.Addr, "live/other", testpeer.CallerOptions{}); len(res.Attempts) != 1 || !res.Attempts[0].Connected {
		t.Errorf("new caller after DELETE /srt/drain: %v, want connected", res.Attempts)
	}
	if m, err := p.Get("/metrics"); err != nil || !strings.Contains(string(m), "caddy_layer4_srt_draining 0") {
		t.Errorf("metrics after the drain lack caddy_layer4_srt_draining 0 (%v)", err)
	}
}
