package loadharness

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// RelayCounters are the plugin's relay metrics, read from Caddy's admin
// API: what the harness needs to tell how many datagrams one wake-up of
// the relay moved.
type RelayCounters struct {
	Packets uint64 // relayed, both directions
	Wakeups uint64 // for datagrams
	Ticks   uint64 // for the batch timer
}

// Sub is what happened between before and c.
func (c RelayCounters) Sub(before RelayCounters) RelayCounters {
	return RelayCounters{Packets: c.Packets - before.Packets, Wakeups: c.Wakeups - before.Wakeups, Ticks: c.Ticks - before.Ticks}
}

// PerWakeup is packets relayed per wake-up of either kind; 0 when the
// relay never woke (the listener path does not use it).
func (c RelayCounters) PerWakeup() float64 {
	if c.Wakeups+c.Ticks == 0 {
		return 0
	}
	return float64(c.Packets) / float64(c.Wakeups+c.Ticks)
}

// TimerShare is the part of the relay's wake-ups that were the batch
// timer's: how much batching engaged.
func (c RelayCounters) TimerShare() float64 {
	if c.Wakeups+c.Ticks == 0 {
		return 0
	}
	return float64(c.Ticks) / float64(c.Wakeups+c.Ticks)
}

// RelayCounters scrapes the proxy's /metrics.
func (p *Proxy) RelayCounters(ctx context.Context) (RelayCounters, error) {
	var c RelayCounters
	url := "http://" + p.Admin + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return c, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, fmt.Errorf("reading the relay metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var into *uint64
		switch name {
		case `caddy_layer4_srt_relayed_packets_total{direction="from_caller"}`,
			`caddy_layer4_srt_relayed_packets_total{direction="from_upstream"}`:
			into = &c.Packets
		case `caddy_layer4_srt_relay_wakeups_total{cause="datagrams"}`:
			into = &c.Wakeups
		case `caddy_layer4_srt_relay_wakeups_total{cause="timer"}`:
			into = &c.Ticks
		default:
			continue
		}
		// Counters print as floats, in exponent form once they grow.
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return c, fmt.Errorf("metric %s: %w", name, err)
		}
		*into += uint64(f)
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("reading the relay metrics: %w", err)
	}
	return c, nil
}
