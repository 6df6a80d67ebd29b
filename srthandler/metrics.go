package srthandler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// The metrics describe the process, not one configuration: sessions and
// upstream health outlive reloads, so the collectors are created once and
// registered with every configuration's registry, and counters keep
// counting across reloads.
const metricsNS, metricsSub = "caddy", "layer4_srt"

var (
	handshakesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNS, Subsystem: metricsSub, Name: "handshakes_total",
		Help: "Caller handshakes that reached a decision, by outcome (accepted, rejected, upstream_rejected, upstream_failed) and rejection code (libsrt API numbering).",
	}, []string{"outcome", "code"})
	handshakeSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNS, Subsystem: metricsSub, Name: "handshake_duration_seconds",
		Help:    "Time from a caller's conclusion to the answer it got, by outcome.",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2, 3},
	}, []string{"outcome"})
	collector = &srtCollector{}
)

// Handshake outcomes.
const (
	outcomeAccepted         = "accepted"
	outcomeRejected         = "rejected"
	outcomeUpstreamRejected = "upstream_rejected"
	outcomeUpstreamFailed   = "upstream_failed"
)

func countHandshake(outcome string, code wire.RejectReason, since time.Time) {
	c := ""
	if outcome != outcomeAccepted {
		c = codeLabel(outcome, code)
	}
	handshakesTotal.WithLabelValues(outcome, c).Inc()
	if !since.IsZero() {
		handshakeSeconds.WithLabelValues(outcome).Observe(time.Since(since).Seconds())
	}
}

func registerMetrics(reg *prometheus.Registry) {
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{handshakesTotal, handshakeSeconds, collector, drainingGauge, droppedCollector,
		directoryLookups, directoryErrors, directoryConflicts, dynamicLookups} {
		// Already registered by another handler of this configuration, or
		// a name clash with another module: either way, metrics are not
		// worth failing a config load over.
		_ = reg.Register(c)
	}
}

var (
	descSessions = prometheus.NewDesc(prometheus.BuildFQName(metricsNS, metricsSub, "sessions"),
		"Live SRT sessions.", nil, nil)
	descBytes = prometheus.NewDesc(prometheus.BuildFQName(metricsNS, metricsSub, "relayed_bytes_total"),
		"Bytes relayed, by direction (from_caller, from_upstream).", []string{"direction"}, nil)
	descPackets = prometheus.NewDesc(prometheus.BuildFQName(metricsNS, metricsSub, "relayed_packets_total"),
		"Datagrams relayed, by direction (from_caller, from_upstream).", []string{"direction"}, nil)
	descWakeups = prometheus.NewDesc(prometheus.BuildFQName(metricsNS, metricsSub, "relay_wakeups_total"),
		"Times the session-socket relay woke up, by cause (datagrams, timer: batch_window). Relayed packets per wake-up is what batching saves.", []string{"cause"}, nil)
	descHealthy = prometheus.NewDesc(prometheus.BuildFQName(metricsNS, metricsSub, "upstream_healthy"),
		"Whether new callers may go to an upstream (1) or not (0), by active and passive checks.", []string{"upstream"}, nil)
	descUpSessions = prometheus.NewDesc(prometheus.BuildFQName(metricsNS, metricsSub, "upstream_sessions"),
		"Live sessions per upstream, handshakes in progress included.", []string{"upstream"}, nil)
)

// srtCollector reads the process's session registry and upstream table
// at scrape time, so the relay's hot path pays nothing for metrics.
type srtCollector struct{}

func (*srtCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descBytes, descPackets, descWakeups, descHealthy, descUpSessions} {
		ch <- d
	}
}

func (*srtCollector) Collect(ch chan<- prometheus.Metric) {
	t, live := session.Default.Totals()
	ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(live))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(t.FromCallerBytes), "from_caller")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(t.FromUpstreamBytes), "from_upstream")
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(t.FromCaller), "from_caller")
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(t.FromUpstream), "from_upstream")
	datagrams, timer := session.RelayWakeups()
	ch <- prometheus.MustNewConstMetric(descWakeups, prometheus.CounterValue, float64(datagrams), "datagrams")
	ch <- prometheus.MustNewConstMetric(descWakeups, prometheus.CounterValue, float64(timer), "timer")
	now := time.Now()
	upstreamStates.Range(func(_, v any) bool {
		u := v.(*upstreamState)
		if u.dynamic.Load() || !u.inUse() {
			// Placeholders are named by callers: unbounded labels. Upstreams
			// no route serves and no session uses (gone from DNS, expired
			// SRS origins) would grow the series with every fleet change.
			return true
		}
		healthy := 0.0
		if u.healthy(now) {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, healthy, u.addr)
		ch <- prometheus.MustNewConstMetric(descUpSessions, prometheus.GaugeValue, float64(u.sessions.Load()), u.addr)
		return true
	})
}
