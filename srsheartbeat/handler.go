// Package srsheartbeat implements the http.handlers.srs_heartbeat module:
// it takes the heartbeats SRS origins post to the proxy and puts their SRT
// endpoints in the pool of every route with `dynamic srs`.
package srsheartbeat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/fleet"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("srs_heartbeat", parseCaddyfile)
	// Before respond, so a site block may end in a catch-all.
	httpcaddyfile.RegisterDirectiveOrder("srs_heartbeat", httpcaddyfile.Before, "respond")
}

// Path is where SRS posts its heartbeats (`heartbeat { url
// http://PROXY:PORT/api/v1/srs/register; }`).
const Path = "/api/v1/srs/register"

// DefaultExpire is three missed heartbeats at SRS's default interval (9.9 s).
const DefaultExpire = 30 * time.Second

// Handler is the srs_heartbeat HTTP handler. Caddyfile syntax:
//
//	srs_heartbeat {
//		expire <duration>   # time since an origin's last heartbeat; default 30s
//	}
//
// It answers POST /api/v1/srs/register and passes every other request on.
// An origin's SRT endpoint is its heartbeat's ip with the port of each of
// its srt entries. Origins outside the upstream_allow of every srt handler
// that serves `dynamic srs` (when one is set) are refused with 403; bad
// bodies get 400 and change nothing.
type Handler struct {
	// Expire is how long an origin stays in the pool after its last
	// heartbeat. Default 30s.
	Expire caddy.Duration `json:"expire,omitempty"`

	logger   *zap.Logger
	registry *fleet.Registry
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.srs_heartbeat",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Expire == 0 {
		h.Expire = caddy.Duration(DefaultExpire)
	}
	if h.registry == nil {
		h.registry = fleet.SRS
	}
	return nil
}

// Validate checks the options.
func (h *Handler) Validate() error {
	if h.Expire < 0 {
		return errors.New("srs_heartbeat: expire must not be negative")
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "expire":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("srs_heartbeat: expire: %v", err)
			}
			h.Expire = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized srs_heartbeat option '%s'", d.Val())
		}
	}
	return nil
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// ServeHTTP registers the origin a heartbeat describes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path != Path {
		return next.ServeHTTP(w, r)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return reply(w, http.StatusMethodNotAllowed, "heartbeats are POSTed")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, fleet.MaxHeartbeatBytes+1))
	if err != nil {
		return reply(w, http.StatusBadRequest, "reading the heartbeat: "+err.Error())
	}
	hb, err := fleet.ParseHeartbeat(body)
	var o fleet.Origin
	if err == nil {
		o, err = hb.Origin(time.Now(), time.Duration(h.Expire))
	}
	if err != nil {
		h.logger.Debug("refused heartbeat", zap.String("remote", r.RemoteAddr), zap.Error(err))
		return reply(w, http.StatusBadRequest, err.Error())
	}
	if ip := o.SRT[0].Addr(); !h.registry.Admits(ip) {
		h.logger.Warn("refused heartbeat from outside upstream_allow",
			zap.String("origin", o.ID), zap.Stringer("ip", ip), zap.String("remote", r.RemoteAddr))
		return reply(w, http.StatusForbidden, fmt.Sprintf("%s is outside upstream_allow", ip))
	}
	if err := h.registry.Register(o); err != nil {
		h.logger.Warn("refused heartbeat", zap.String("origin", o.ID), zap.Error(err))
		return reply(w, http.StatusServiceUnavailable, err.Error())
	}
	h.logger.Debug("heartbeat", zap.String("origin", o.ID), zap.String("device_id", o.DeviceID),
		zap.Stringers("srt", addrPorts(o.SRT)), zap.String("service", o.Service))
	return reply(w, http.StatusOK, "")
}

func addrPorts(list []netip.AddrPort) []fmt.Stringer {
	out := make([]fmt.Stringer, len(list))
	for i, ap := range list {
		out[i] = ap
	}
	return out
}

// reply answers in the shape SRS's own API uses: code 0 is success.
func reply(w http.ResponseWriter, status int, msg string) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"code": 0}
	if status != http.StatusOK {
		body = map[string]any{"code": status, "error": msg}
	}
	return json.NewEncoder(w).Encode(body)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
