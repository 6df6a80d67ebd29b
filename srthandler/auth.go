package srthandler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/streamid"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Auth admits a route's callers before any origin sees them: an HTTP
// callback, or a signed token in the stream ID. Stream ID fields are
// written by the caller; only auth makes them trustworthy.
type Auth struct {
	HTTP *AuthHTTP `json:"http,omitempty"`
	JWT  *AuthJWT  `json:"jwt,omitempty"`
}

// AuthHTTP asks an HTTP endpoint about each new caller: one POST with
// the stream ID, its fields, the caller's address and the listener.
type AuthHTTP struct {
	URL string `json:"url"`
	// Timeout bounds the callback; default 1s, and less than the
	// handler's handshake_timeout, which the callback's time counts
	// against.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Cache keeps each answer this long for the same stream ID and caller
	// IP; 0 (default) asks every time.
	Cache caddy.Duration `json:"cache,omitempty"`
	// OnError says what a timeout or an unreachable endpoint means:
	// "reject" (default, unauthorized) or "allow".
	OnError string `json:"on_error,omitempty"`

	client *http.Client
	cache  *decisionCache
}

// Auth defaults and bounds.
const (
	DefaultAuthTimeout = time.Second
	// refusalDelay damps guessing: a refused caller hears its answer this
	// much later (never past its handshake budget).
	refusalDelay = 400 * time.Millisecond
	// maxAuthResponse bounds what is read of a callback's answer.
	maxAuthResponse = 64 << 10
	// maxCachedDecisions bounds the decision cache of one route: callers
	// choose stream IDs freely.
	maxCachedDecisions = 10000
	// maxStreamID is SRT's own cap on a stream ID (SRTO_STREAMID).
	maxStreamID = 512
)

// verdict is what auth decided for one caller.
type verdict struct {
	reason   wire.RejectReason // 0: admitted
	upstream string            // host:port the callback placed the caller on
	why      string
}

func (a *Auth) provision(ctx caddy.Context) error {
	switch {
	case a.HTTP != nil && a.JWT != nil:
		return errors.New("auth: one of http or jwt, not both")
	case a.HTTP != nil:
		return a.HTTP.provision()
	case a.JWT != nil:
		return a.JWT.provision(ctx)
	}
	return errors.New("auth: want http or jwt")
}

func (a *AuthHTTP) provision() error {
	u, err := url.Parse(a.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("auth http: want an http(s) URL, got %q", a.URL)
	}
	defaultTo(&a.Timeout, caddy.Duration(DefaultAuthTimeout))
	switch a.OnError {
	case "", "reject", "allow":
	default:
		return fmt.Errorf("auth http: on_error %q: want reject or allow", a.OnError)
	}
	if a.Cache < 0 || a.Timeout < 0 {
		return errors.New("auth http: durations must not be negative")
	}
	a.client = &http.Client{
		// Its own connections, closed with the configuration (cleanupAuth).
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		// The endpoint answers; it does not send the proxy elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if a.Cache > 0 {
		a.cache = &decisionCache{entries: make(map[string]cachedVerdict)}
	}
	return nil
}

// provisionAuth readies every route's auth and collects the stream ID
// keys that hold tokens, which are then never shown.
func (h *Handler) provisionAuth(ctx caddy.Context) error {
	for i, r := range h.Routes {
		if r.Auth == nil {
			continue
		}
		if err := r.Auth.provision(ctx); err != nil {
			return fmt.Errorf("srt route %d: %w", i, err)
		}
		if j := r.Auth.JWT; j != nil && j.Param != streamid.SessionKey {
			h.secretKeys = append(h.secretKeys, j.Param)
		}
	}
	return nil
}

// cleanupAuth closes the kept-alive connections of this configuration's
// callbacks and key set fetches.
func (h *Handler) cleanupAuth() {
	for _, r := range h.Routes {
		switch {
		case r.Auth == nil:
		case r.Auth.HTTP != nil && r.Auth.HTTP.client != nil:
			r.Auth.HTTP.client.CloseIdleConnections()
		case r.Auth.JWT != nil && r.Auth.JWT.jwks != nil:
			r.Auth.JWT.jwks.client.CloseIdleConnections()
		}
	}
}

// validateAuth refuses a callback that could use up the whole handshake
// budget, leaving nothing for the origin.
func (h *Handler) validateAuth() error {
	for i, r := range h.Routes {
		if r.Auth == nil || r.Auth.HTTP == nil {
			continue
		}
		if t := r.Auth.HTTP.Timeout; t >= h.HandshakeTimeout {
			return fmt.Errorf("srt route %d: auth http timeout %v must be less than handshake_timeout %v",
				i, time.Duration(t), time.Duration(h.HandshakeTimeout))
		}
		if r.Reject != "" {
			return fmt.Errorf("srt route %d: auth on a route that rejects every caller", i)
		}
	}
	return nil
}

// authorize admits the caller to route, or rejects it. A caller the
// callback placed gets that upstream as its only candidate. While the
// decision is pending the caller's repeated conclusions are read and
// dropped (the one answer comes later); a refusal is sent after
// refusalDelay.
func (h *Handler) authorize(in *datagramReader, route *Route, info *streamid.Info, caller netip.AddrPort, hs *wire.Handshake, received time.Time, log *zap.Logger) (placed []*upstreamState, reject []byte) {
	if route.Auth == nil {
		return nil, nil
	}
	deadline := received.Add(time.Duration(h.HandshakeTimeout))
	stopDraining := drainCaller(in.cx)
	var v verdict
	if route.Auth.HTTP != nil {
		v = route.Auth.HTTP.decide(info, caller, in.cx.LocalAddr().String(), deadline, log)
	} else {
		v = route.Auth.JWT.decide(info, deadline)
	}
	if v.reason != 0 {
		if wait := min(refusalDelay, time.Until(deadline)-refusalDelay/4); wait > 0 {
			time.Sleep(wait)
		}
	}
	stopDraining()
	if v.reason != 0 {
		return nil, h.reject(in.cx, hs, v.reason, log, "auth: "+v.why)
	}
	if v.upstream == "" {
		return nil, nil
	}
	s := dynamicStateOf(v.upstream)
	s.acquire()
	return []*upstreamState{s}, nil
}

// authRequest is the JSON body of the callback.
type authRequest struct {
	StreamID string            `json:"stream_id"`
	Resource string            `json:"resource"`
	Host     string            `json:"host"`
	User     string            `json:"user"`
	Mode     string            `json:"mode"`
	Session  string            `json:"session"`
	Type     string            `json:"type"`
	Keys     map[string]string `json:"keys,omitempty"`
	Caller   string            `json:"caller"`
	Listener string            `json:"listener"`
}

// authResponse is what a 2xx answer may say.
type authResponse struct {
	Upstream string `json:"upstream"`
}

func (a *AuthHTTP) decide(info *streamid.Info, caller netip.AddrPort, listener string, deadline time.Time, log *zap.Logger) verdict {
	key := info.Raw + "\x00" + caller.Addr().String()
	now := time.Now()
	if v, ok := a.cache.get(key, now); ok {
		return v
	}
	v, err := a.ask(info, caller, listener, deadline)
	if err != nil {
		if a.OnError == "allow" {
			log.Warn("auth callback failed; admitting caller (on_error allow)", zap.Error(err))
			return verdict{}
		}
		log.Warn("auth callback failed", zap.Error(err))
		return verdict{reason: wire.RejXUnauthorized, why: "callback failed (on_error reject)"}
	}
	a.cache.put(key, v, now.Add(time.Duration(a.Cache)))
	return v
}

// ask POSTs one caller to the endpoint. An error is the endpoint's
// failure (no answer in time, a bad placement), not a refusal.
func (a *AuthHTTP) ask(info *streamid.Info, caller netip.AddrPort, listener string, deadline time.Time) (verdict, error) {
	body, err := json.Marshal(authRequest{
		StreamID: info.Raw, Resource: info.Resource, Host: info.Host, User: info.User,
		Mode: info.Mode, Session: info.Session, Type: info.Type, Keys: info.Keys,
		Caller: caller.String(), Listener: listener,
	})
	if err != nil {
		return verdict{}, fmt.Errorf("auth http: encoding request: %w", err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), minTime(deadline, time.Now().Add(time.Duration(a.Timeout))))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, bytes.NewReader(body))
	if err != nil {
		return verdict{}, fmt.Errorf("auth http: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return verdict{}, fmt.Errorf("auth http: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthResponse))
	if err != nil {
		return verdict{}, fmt.Errorf("auth http: reading answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return verdict{reason: wire.RejXForbidden, why: "callback answered 403"}, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return verdict{reason: wire.RejXUnauthorized, why: fmt.Sprintf("callback answered %d", resp.StatusCode)}, nil
	}
	var ar authResponse
	if len(bytes.TrimSpace(answer)) == 0 || json.Unmarshal(answer, &ar) != nil || ar.Upstream == "" {
		return verdict{}, nil // admitted; the route's upstreams serve it
	}
	addr, err := dialAddress(ar.Upstream)
	if err != nil {
		return verdict{}, fmt.Errorf("auth http: callback placed the caller on: %w", err)
	}
	return verdict{upstream: addr}, nil
}

// decisionCache keeps callback answers per stream ID and caller IP, up to
// maxCachedDecisions; when full, expired entries go, and if none has,
// new answers are not kept.
type decisionCache struct {
	mu      sync.Mutex
	entries map[string]cachedVerdict
}

type cachedVerdict struct {
	v     verdict
	until time.Time
}

func (c *decisionCache) get(key string, now time.Time) (verdict, bool) {
	if c == nil {
		return verdict{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.until) {
		return verdict{}, false
	}
	return e.v, true
}

func (c *decisionCache) put(key string, v verdict, until time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedDecisions {
		now := time.Now()
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCachedDecisions {
			return
		}
	}
	c.entries[key] = cachedVerdict{v: v, until: until}
}

// unmarshalAuth reads `auth http URL { ... }` or `auth jwt { ... }`; args
// are the words after auth.
func unmarshalAuth(d *caddyfile.Dispenser, args []string) (*Auth, error) {
	if len(args) == 0 {
		return nil, d.Errf("auth: want http URL or jwt")
	}
	a := new(Auth)
	switch args[0] {
	case "http":
		if len(args) != 2 {
			return nil, d.Errf("auth http: want one URL")
		}
		a.HTTP = &AuthHTTP{URL: args[1]}
	case "jwt":
		if len(args) != 1 {
			return nil, d.Errf("auth jwt: its options go in a block")
		}
		a.JWT = new(AuthJWT)
	default:
		return nil, d.Errf("auth %q: want http or jwt", args[0])
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("auth: option '%s' given twice", opt)
		}
		seen[opt] = true
		if d.CountRemainingArgs() != 1 {
			return nil, d.ArgErr()
		}
		d.NextArg()
		val := d.Val()
		switch {
		case a.HTTP != nil && (opt == "timeout" || opt == "cache"):
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return nil, d.Errf("auth http: %s: %v", opt, err)
			}
			*map[string]*caddy.Duration{"timeout": &a.HTTP.Timeout, "cache": &a.HTTP.Cache}[opt] = caddy.Duration(dur)
		case a.HTTP != nil && opt == "on_error":
			a.HTTP.OnError = val
		case a.JWT != nil && opt == "key":
			a.JWT.Key = val
		case a.JWT != nil && opt == "jwks":
			a.JWT.JWKS = val
		case a.JWT != nil && opt == "param":
			a.JWT.Param = val
		default:
			return nil, d.Errf("unrecognized auth %s option '%s'", args[0], opt)
		}
	}
	return a, nil
}
