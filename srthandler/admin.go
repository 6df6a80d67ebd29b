package srthandler

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the admin.api.srt module: it lists the live SRT sessions of
// the process and ends them on request. Caddy loads it with the admin
// API; it has no configuration.
//
//	GET    /srt/sessions        every live session, as JSON
//	DELETE /srt/sessions/<id>   end one (SHUTDOWN to both sides)
//	GET    /srt/upstreams       every upstream a route serves or a session uses
//	GET    /srt/streams         every live stream, its upstream and instance
//	GET/POST/DELETE /srt/drain  instance drain (see drain.go)
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.srt",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision registers the srt metrics with the registry of the admin
// server being built. Caddy builds the admin server, and the registry its
// /metrics serves, from a new config before it provisions that config's
// apps: registering only from the handler left a config that failed
// after that point (a POST /load answered 400) serving no srt series.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	registerMetrics(ctx.GetMetricsRegistry())
	return nil
}

// Routes returns the admin routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/srt/sessions", Handler: caddy.AdminHandlerFunc(a.sessions)},
		{Pattern: "/srt/sessions/", Handler: caddy.AdminHandlerFunc(a.session)},
		{Pattern: "/srt/upstreams", Handler: caddy.AdminHandlerFunc(a.upstreams)},
		{Pattern: "/srt/streams", Handler: caddy.AdminHandlerFunc(a.streams)},
		{Pattern: "/srt/drain", Handler: caddy.AdminHandlerFunc(a.drain)},
	}
}

// SessionView is one session as GET /srt/sessions reports it.
type SessionView struct {
	ID             string        `json:"id"`
	Caller         string        `json:"caller"`
	CallerSocket   uint32        `json:"caller_socket"`
	Upstream       string        `json:"upstream"`
	UpstreamSocket uint32        `json:"upstream_socket"`
	StreamID       string        `json:"stream_id"`
	Stream         StreamView    `json:"stream"`
	Route          int           `json:"route"`
	DataPath       string        `json:"data_path"`
	Started        time.Time     `json:"started"`
	AgeSeconds     float64       `json:"age_seconds"`
	FromCaller     DirectionView `json:"from_caller"`
	FromUpstream   DirectionView `json:"from_upstream"`
	// UpstreamView is what the upstream's ACKs say about the link: the
	// upstream as the receiver of the caller's data (a publisher's
	// stream); CallerView likewise from the caller's ACKs (a player's).
	UpstreamView *LinkView `json:"upstream_view,omitempty"`
	CallerView   *LinkView `json:"caller_view,omitempty"`
}

// StreamView holds the fields of a stream ID.
type StreamView struct {
	Resource string            `json:"resource,omitempty"`
	Host     string            `json:"host,omitempty"`
	User     string            `json:"user,omitempty"`
	Mode     string            `json:"mode"`
	Session  string            `json:"session,omitempty"`
	Type     string            `json:"type"`
	Keys     map[string]string `json:"keys,omitempty"`
}

// DirectionView is the traffic one way.
type DirectionView struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// LastPacketAgeSeconds is how long ago the last datagram passed, to
	// the precision of the idle check (at most a second).
	LastPacketAgeSeconds float64 `json:"last_packet_age_seconds"`
	// KernelPackets is how many of Packets the ebpf data path forwarded
	// in the kernel; the relay saw the rest.
	KernelPackets uint64 `json:"kernel_packets,omitempty"`
}

// LinkView is read passively from the last full ACK one side sent.
type LinkView struct {
	RTTMillis         float64 `json:"rtt_ms"`
	RTTVarMillis      float64 `json:"rtt_var_ms"`
	ReceivePackets    uint32  `json:"receive_rate_packets"`
	ReceiveBytes      uint32  `json:"receive_rate_bytes"`
	CapacityPacketsPS uint32  `json:"link_capacity_packets"`
}

func linkView(a wire.ACK, seen bool) *LinkView {
	if !seen {
		return nil
	}
	return &LinkView{
		RTTMillis:         float64(a.RTT) / 1000,
		RTTVarMillis:      float64(a.RTTVar) / 1000,
		ReceivePackets:    a.PacketRate,
		ReceiveBytes:      a.ByteRate,
		CapacityPacketsPS: a.Capacity,
	}
}

// viewOf describes a live session.
func viewOf(s *session.Session, now time.Time) SessionView {
	st := s.Stats()
	v := SessionView{
		ID:             s.ID,
		Caller:         s.Caller.String(),
		CallerSocket:   s.CallerSocket,
		Upstream:       s.UpstreamAddr,
		UpstreamSocket: s.UpstreamSocket,
		Started:        s.Started.UTC(),
		AgeSeconds:     now.Sub(s.Started).Seconds(),
		DataPath:       s.Path().DataPath(),
		FromCaller: DirectionView{Packets: st.FromCaller, Bytes: st.FromCallerBytes,
			LastPacketAgeSeconds: max(0, now.Sub(st.LastCaller).Seconds()), KernelPackets: st.KernelFromCaller},
		FromUpstream: DirectionView{Packets: st.FromUpstream, Bytes: st.FromUpstreamBytes,
			LastPacketAgeSeconds: max(0, now.Sub(st.LastUpstream).Seconds()), KernelPackets: st.KernelFromUpstream},
		UpstreamView: linkView(st.UpstreamACK, st.HaveUpstreamACK),
		CallerView:   linkView(st.CallerACK, st.HaveCallerACK),
	}
	if info, ok := s.Info.(*SessionInfo); ok {
		si := info.Stream.Redact(info.SecretKeys...)
		v.StreamID = si.Raw
		v.Stream = StreamView{Resource: si.Resource, Host: si.Host, User: si.User, Mode: si.Mode,
			Session: si.Session, Type: si.Type, Keys: si.Keys}
		v.Route = info.Route
	}
	return v
}

func (a *AdminAPI) sessions(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use GET", r.Method)}
	}
	now := time.Now()
	live := session.Default.Sessions()
	out := make([]SessionView, 0, len(live))
	for _, s := range live {
		out = append(out, viewOf(s, now))
	}
	slices.SortFunc(out, func(a, b SessionView) int { return a.Started.Compare(b.Started) })
	setDrainHeader(w)
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

func (a *AdminAPI) session(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(r.URL.Path, "/srt/sessions/")
	s := session.Default.ByID(id)
	if s == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no live SRT session %q", id)}
	}
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		return json.NewEncoder(w).Encode(viewOf(s, time.Now()))
	case http.MethodDelete:
		s.Kick()
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use GET or DELETE", r.Method)}
}

// Interface guards
var (
	_ caddy.Provisioner = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
