package srthandler

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Instance drain: an operator taking this instance out of an anycast or
// DNS pool stops new callers (they get down, 1503, and try another
// instance) while live sessions run to their end. The state belongs to
// the process, not to a configuration: a reload neither starts nor ends
// a drain.
//
//	GET    /srt/drain   {"draining":false,"sessions":3}
//	POST   /srt/drain   start draining (answers like GET)
//	DELETE /srt/drain   stop draining (answers like GET)
//
// GET /srt/sessions says it too, in its Srt-Draining header (true or
// false), and the gauge caddy_layer4_srt_draining is 1 while draining.

var drainSince atomic.Int64 // unix nanoseconds the drain began; 0: not draining

// draining reports whether the instance is draining.
func draining() bool { return drainSince.Load() != 0 }

// admissionClosed says whether new callers are refused as a whole, and
// with what: overload while the process stops (see stop.go), down while
// it drains. conclude asks it first, so a refused caller costs nothing.
func admissionClosed() (wire.RejectReason, string) {
	if stopping.Load() {
		return wire.RejXOverload, "the process is stopping (grace_period)"
	}
	if draining() {
		return wire.RejXDown, "the instance is draining"
	}
	return 0, ""
}

// DrainView is what /srt/drain answers.
type DrainView struct {
	Draining bool       `json:"draining"`
	Since    *time.Time `json:"since,omitempty"`
	// Sessions is the number of live sessions: a drain is complete when
	// it reaches 0.
	Sessions int `json:"sessions"`
}

func drainView() DrainView {
	v := DrainView{Sessions: session.Default.Len()}
	if ns := drainSince.Load(); ns != 0 {
		t := time.Unix(0, ns).UTC()
		v.Draining, v.Since = true, &t
	}
	return v
}

func (a *AdminAPI) drain(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		if drainSince.CompareAndSwap(0, time.Now().UnixNano()) {
			caddy.Log().Named("srt").Info("draining: new callers get down (1503); live sessions go on",
				zap.Int("sessions", session.Default.Len()))
		}
	case http.MethodDelete:
		if drainSince.Swap(0) != 0 {
			caddy.Log().Named("srt").Info("drain ended: new callers are admitted again")
		}
	default:
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use GET, POST or DELETE", r.Method)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(drainView())
}

// setDrainHeader tells a /srt/sessions reader whether the instance drains.
func setDrainHeader(w http.ResponseWriter) {
	w.Header().Set("Srt-Draining", fmt.Sprint(draining()))
}

var drainingGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
	Namespace: metricsNS, Subsystem: metricsSub, Name: "draining",
	Help: "1 while the instance drains (POST /srt/drain): new callers get down (1503).",
}, func() float64 {
	if draining() {
		return 1
	}
	return 0
})
