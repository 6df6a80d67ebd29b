package srthandler

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// UpstreamView is one upstream as GET /srt/upstreams reports it.
type UpstreamView struct {
	Address string `json:"address"`
	// Sources are where the routes that serve it now got it from: static
	// (to), dns (dynamic a/srv), srs (dynamic srs). Empty for an upstream
	// no route lists any more whose sessions live on (draining), and for
	// placeholder upstreams.
	Sources []string `json:"sources"`
	// Placeholder is set for an address a {l4.*} placeholder produced.
	Placeholder bool `json:"placeholder,omitempty"`
	// Healthy says whether new callers may go there.
	Healthy bool `json:"healthy"`
	// Sessions counts live sessions, handshakes in progress included.
	Sessions int64 `json:"sessions"`
}

func (a *AdminAPI) upstreams(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use GET", r.Method)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(upstreamViews(time.Now()))
}

// upstreamViews lists every upstream a route serves now or a session
// still uses, by address.
func upstreamViews(now time.Time) []UpstreamView {
	out := []UpstreamView{}
	upstreamStates.Range(func(_, v any) bool {
		u := v.(*upstreamState)
		view := UpstreamView{Address: u.addr, Sources: u.sources(), Placeholder: u.dynamic.Load(),
			Healthy: u.healthy(now), Sessions: u.sessions.Load()}
		if view.Sources == nil {
			view.Sources = []string{}
		}
		if u.inUse() {
			out = append(out, view)
		}
		return true
	})
	slices.SortFunc(out, func(a, b UpstreamView) int { return strings.Compare(a.Address, b.Address) })
	return out
}
