package srthandler_test

import (
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/srthandler"
)

func sessions(t *testing.T, p *testpeer.Proxy) []srthandler.SessionView {
	t.Helper()
	return adminJSON[[]srthandler.SessionView](t, p, "/srt/sessions")
}

// metric reads one sample from the admin API's /metrics.
func metric(t *testing.T, p *testpeer.Proxy, name, labels string) float64 {
	t.Helper()
	b, err := p.Get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{` + regexp.QuoteMeta(labels) + `\})? ([0-9.e+-]+)$`)
	if labels == "" {
		re = regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`)
	}
	m := re.FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[len(m)-1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// An operator sees a live stream, with growing counters and an RTT, can
// end it, and watches the metrics move.
func TestSessionsAPIAndMetrics(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{"resource": []string{"live/*"}, "to": to(b.Addr())}},
	}, testpeer.Options{Admin: true})

	accepted := metric(t, p, "caddy_layer4_srt_handshakes_total", `code="",outcome="accepted"`)
	notFound := metric(t, p, "caddy_layer4_srt_handshakes_total", `code="1404",outcome="rejected"`)

	pub, err := testpeer.Dial(p.Addr, "#!::r=live/cam7,m=publish,u=ops", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		msg := make([]byte, 1316)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				writerDone <- nil
				return
			case <-tick.C:
				if _, err := pub.Write(msg); err != nil {
					writerDone <- err
					return
				}
			}
		}
	}()
	if _, err := testpeer.Dial(p.Addr, "#!::r=nowhere/x", testpeer.DialOptions{}); err == nil {
		t.Fatal("a caller with no route got through")
	}

	var first srthandler.SessionView
	// gosrt's ACKs report a receive rate once it has measured a second.
	waitFor(t, 4*time.Second, "the session, with link figures from the backend's ACKs", func() bool {
		ss := sessions(t, p)
		if len(ss) != 1 || ss[0].UpstreamView == nil || ss[0].UpstreamView.ReceivePackets == 0 {
			return false
		}
		first = ss[0]
		return true
	})
	if first.StreamID != "#!::r=live/cam7,m=publish,u=ops" || first.Stream.Resource != "live/cam7" ||
		first.Stream.Mode != "publish" || first.Stream.User != "ops" || first.Upstream != b.Addr() ||
		first.UpstreamSocket == 0 || first.CallerSocket == 0 || first.DataPath != "socket" {
		t.Errorf("session view: %+v", first)
	}
	if first.UpstreamView.RTTMillis <= 0 || first.UpstreamView.ReceivePackets == 0 {
		t.Errorf("no link figures from the backend's ACKs: %+v", *first.UpstreamView)
	}
	time.Sleep(300 * time.Millisecond)
	second := sessions(t, p)[0]
	if second.FromCaller.Packets <= first.FromCaller.Packets || second.FromCaller.Bytes <= first.FromCaller.Bytes ||
		second.FromUpstream.Packets <= first.FromUpstream.Packets {
		t.Errorf("counters did not grow: %+v then %+v", first.FromCaller, second.FromCaller)
	}
	if second.FromCaller.LastPacketAgeSeconds > 1.5 {
		t.Errorf("last packet from the caller %.1fs ago on a live stream", second.FromCaller.LastPacketAgeSeconds)
	}

	if got := metric(t, p, "caddy_layer4_srt_handshakes_total", `code="",outcome="accepted"`); got != accepted+1 {
		t.Errorf("accepted handshakes: %v, want %v", got, accepted+1)
	}
	if got := metric(t, p, "caddy_layer4_srt_handshakes_total", `code="1404",outcome="rejected"`); got != notFound+1 {
		t.Errorf("not_found rejections: %v, want %v", got, notFound+1)
	}
	if got := metric(t, p, "caddy_layer4_srt_sessions", ""); got != 1 {
		t.Errorf("live sessions metric: %v", got)
	}
	bytesBefore := metric(t, p, "caddy_layer4_srt_relayed_bytes_total", `direction="from_caller"`)
	if bytesBefore < float64(second.FromCaller.Bytes) {
		t.Errorf("relayed bytes metric %v below the session's own %d", bytesBefore, second.FromCaller.Bytes)
	}
	if runtime.GOOS == "linux" && metric(t, p, "caddy_layer4_srt_relay_wakeups_total", `cause="datagrams"`) == 0 {
		t.Errorf("the relay relayed without waking up, by its metrics")
	}
	if body, err := p.Get("/metrics"); err != nil || !strings.Contains(string(body), `caddy_layer4_srt_relay_wakeups_total{cause="timer"}`) {
		t.Errorf("no relay timer wake-ups in the metrics (%v)", err)
	}
	if metric(t, p, "caddy_layer4_srt_upstream_healthy", `upstream="`+b.Addr()+`"`) != 1 {
		t.Errorf("upstream not reported healthy")
	}

	// DELETE ends it on both sides within a second.
	start := time.Now()
	if _, err := p.Delete("/srt/sessions/" + second.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-writerDone:
		if err == nil {
			t.Fatal("writer stopped without an error")
		}
	case <-time.After(time.Second):
		close(stop)
		t.Fatal("the caller still writes a second after DELETE")
	}
	waitFor(t, time.Second-time.Since(start), "the backend to drop the connection", func() bool { return b.Live() == 0 })
	if n := len(sessions(t, p)); n != 0 {
		t.Errorf("%d sessions after DELETE", n)
	}
	if _, err := p.Delete("/srt/sessions/" + second.ID); err == nil {
		t.Error("DELETE of an ended session succeeded")
	}
	if after := metric(t, p, "caddy_layer4_srt_relayed_bytes_total", `direction="from_caller"`); after < bytesBefore {
		t.Errorf("relayed bytes went back from %v to %v when the session ended", bytesBefore, after)
	}
}
