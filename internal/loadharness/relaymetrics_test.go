package loadharness

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRelayCountersReadsTheExposition(t *testing.T) {
	const body = `# HELP caddy_layer4_srt_relayed_packets_total Datagrams relayed.
# TYPE caddy_layer4_srt_relayed_packets_total counter
caddy_layer4_srt_relayed_packets_total{direction="from_caller"} 1.234567e+06
caddy_layer4_srt_relayed_packets_total{direction="from_upstream"} 1000
caddy_layer4_srt_relayed_bytes_total{direction="from_caller"} 99999
caddy_layer4_srt_relay_wakeups_total{cause="datagrams"} 5000
caddy_layer4_srt_relay_wakeups_total{cause="timer"} 250
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	p := &Proxy{Admin: strings.TrimPrefix(srv.URL, "http://")}
	got, err := p.RelayCounters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := RelayCounters{Packets: 1235567, Wakeups: 5000, Ticks: 250}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if w := got.Sub(RelayCounters{Packets: 567, Wakeups: 0, Ticks: 0}).PerWakeup(); w != 1235000.0/5250 {
		t.Errorf("per wake-up = %v", w)
	}
	if s := got.TimerShare(); s != 250.0/5250 {
		t.Errorf("timer share = %v", s)
	}
	if (RelayCounters{Packets: 10}).PerWakeup() != 0 || (RelayCounters{Packets: 10}).TimerShare() != 0 {
		t.Errorf("a relay that never woke moved packets per wake-up")
	}
}
