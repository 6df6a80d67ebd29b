package srthandler

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Metrics of what hostile or broken peers send, kept apart from the
// traffic metrics: their labels must stay bounded whatever peers send.

var descDroppedControl = prometheus.NewDesc(prometheus.BuildFQName(metricsNS, metricsSub, "dropped_control_total"),
	"Control packets sessions dropped instead of relaying, by why (socket_id: addressed to another socket, a forgery; malformed: lengths or ranges no SRT peer sends).",
	[]string{"reason"}, nil)

type dropCollector struct{}

var droppedCollector = &dropCollector{}

func (*dropCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descDroppedControl }

func (*dropCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range session.DroppedControl() {
		ch <- prometheus.MustNewConstMetric(descDroppedControl, prometheus.CounterValue, float64(n), reason)
	}
}

// codeLabel is a rejection's metric label: its number when the proxy
// chose it (configured codes are bounded by the configuration) or it is a
// known reason; "other" for anything else an upstream sends, which would
// otherwise make one series per value an upstream cares to send.
func codeLabel(outcome string, code wire.RejectReason) string {
	if outcome == outcomeUpstreamRejected && !code.Known() {
		return "other"
	}
	return strconv.FormatUint(uint64(code), 10)
}
