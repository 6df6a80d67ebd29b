package srthandler_test

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// srtSeries scrapes the admin API's /metrics and returns every
// caddy_layer4_srt_* series with its value.
func srtSeries(t *testing.T, p *testpeer.Proxy) map[string]float64 {
	t.Helper()
	b, err := p.Get("/metrics")
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_layer4_srt_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// counterLike reports a series that must never go back.
func counterLike(series string) bool {
	name, _, _ := strings.Cut(series, "{")
	for _, s := range []string{"_total", "_count", "_sum", "_bucket"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// TestMetricsSurviveRejectedLoad: a config load that Caddy rejects (HTTP
// 400) between two good ones leaves every srt series on /metrics, and the
// counters never go back. Caddy replaces the admin server, and the
// registry /metrics serves, before it provisions the apps of a new
// config: a config that fails after that left a registry without them.
func TestMetricsSurviveRejectedLoad(t *testing.T) {
	b := startBackend(t, "gosrt")
	good := map[string]any{"routes": []any{map[string]any{"to": to(b.Addr())}}}
	p := testpeer.StartProxy(t, good, testpeer.Options{Admin: true})
	c := testpeer.NewRawCaller(t, p.Addr, 0x515)
	if hs, err := wire.ParseHandshake(c.Handshake(5, "live/metrics", time.Second)); err != nil || hs.Type != wire.HSConclusion {
		t.Fatalf("no session: %v", err)
	}
	first := srtSeries(t, p)
	if len(first) == 0 {
		t.Fatal("no caddy_layer4_srt_ series after a good load")
	}

	check := func(when string, prev map[string]float64) map[string]float64 {
		t.Helper()
		now := srtSeries(t, p)
		for s, v := range prev {
			got, ok := now[s]
			switch {
			case !ok:
				t.Errorf("%s: series %s is gone", when, s)
			case counterLike(s) && got < v:
				t.Errorf("%s: counter %s went back from %v to %v", when, s, v, got)
			}
		}
		return now
	}
	bad := map[string]any{"routes": []any{map[string]any{"to": to(b.Addr()), "lb_policy": "no_such_policy"}}}
	if err := p.Reload(bad); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("loading a bad config: %v, want HTTP 400", err)
	}
	second := check("after a rejected load", first)
	if err := p.Reload(good); err != nil {
		t.Fatal(err)
	}
	check("after the next good load", second)
}
