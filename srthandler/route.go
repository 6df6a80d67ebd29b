package srthandler

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/srtroute/caddy-l4-srt/internal/streamid"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Route sends the callers it matches to a pool of upstreams, or rejects
// them. All matchers that are set must hold; within one matcher any value
// may. A route without matchers matches every caller.
type Route struct {
	// StreamID matches the raw stream ID against globs.
	StreamID []string `json:"stream_id,omitempty"`
	// StreamIDRegexp matches the raw stream ID against a regular expression.
	StreamIDRegexp string `json:"stream_id_regexp,omitempty"`
	// Resource, Host and User match the r, h and u fields of the stream ID
	// against globs (Host case-insensitively).
	Resource []string `json:"resource,omitempty"`
	Host     []string `json:"host,omitempty"`
	User     []string `json:"user,omitempty"`
	// Mode matches the requested mode: publish, request or bidirectional.
	Mode []string `json:"mode,omitempty"`

	// To lists the upstreams, "udp/host:port" or "host:port"; {l4.*}
	// placeholders are replaced per caller.
	To []string `json:"to,omitempty"`
	// LBPolicy picks among To: stream_hash (default), round_robin, random,
	// first, least_sessions.
	LBPolicy string `json:"lb_policy,omitempty"`
	// Dynamic is a source of upstreams that change without a reload:
	// DNS (a, srv) or SRS heartbeats (srs); beside or instead of To.
	Dynamic *DynamicUpstreams `json:"dynamic,omitempty"`
	// Reject rejects matching callers with this reason instead.
	Reject Rejection `json:"reject,omitempty"`
	// Auth admits callers (an HTTP callback or a signed token) before any
	// upstream sees them; see auth.go.
	Auth *Auth `json:"auth,omitempty"`

	streamID, resource, host, user []glob
	streamIDRe                     *regexp.Regexp
	upstreams                      []*upstream
	pool                           *dynamicPool // nil without Dynamic
	allow                          allowList    // the handler's upstream_allow
	policy                         Policy
	reason                         wire.RejectReason
}

// Rejection is a configured rejection reason: a name such as "forbidden"
// or a number (SRT API numbering, 1000 and up). JSON accepts a string or
// a number.
type Rejection string

// UnmarshalJSON accepts "forbidden", "1403" and 1403.
func (r *Rejection) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*r = Rejection(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("reject: want a name or a number: %w", err)
	}
	*r = Rejection(s)
	return nil
}

func (r *Route) provision() error {
	var err error
	if r.streamID, err = compileGlobs(r.StreamID, false); err != nil {
		return err
	}
	if r.resource, err = compileGlobs(r.Resource, false); err != nil {
		return err
	}
	if r.host, err = compileGlobs(r.Host, true); err != nil {
		return err
	}
	if r.user, err = compileGlobs(r.User, false); err != nil {
		return err
	}
	if r.StreamIDRegexp != "" {
		if r.streamIDRe, err = regexp.Compile(r.StreamIDRegexp); err != nil {
			return fmt.Errorf("stream_id_regexp: %w", err)
		}
	}
	for _, m := range r.Mode {
		if !streamid.ValidMode(m) {
			return fmt.Errorf("mode %q: want publish, request or bidirectional", m)
		}
	}
	sends := len(r.To) > 0 || r.Dynamic != nil
	switch {
	case sends && r.Reject != "":
		return fmt.Errorf("a route either sends callers to upstreams (to, dynamic) or rejects them (reject), not both")
	case !sends && r.Reject == "":
		return fmt.Errorf("a route needs an action: to <upstreams...>, dynamic <source> or reject <reason>")
	case r.Reject != "":
		if r.LBPolicy != "" {
			return fmt.Errorf("lb_policy needs upstreams (to, dynamic)")
		}
		if r.reason, err = wire.ParseRejectReason(string(r.Reject)); err != nil {
			return err
		}
		return nil
	}
	if r.Dynamic != nil {
		if err := r.Dynamic.validate(); err != nil {
			return err
		}
	}
	for _, to := range r.To {
		u, err := parseUpstream(to)
		if err != nil {
			return err
		}
		r.upstreams = append(r.upstreams, u)
	}
	r.policy, err = newPolicy(r.LBPolicy)
	return err
}

// matches reports whether the caller described by info matches every
// matcher of r.
func (r *Route) matches(info *streamid.Info) bool {
	return matchAny(r.streamID, info.Raw) &&
		(r.streamIDRe == nil || r.streamIDRe.MatchString(info.Raw)) &&
		matchAny(r.resource, info.Resource) &&
		matchAny(r.host, info.Host) &&
		matchAny(r.user, info.User) &&
		(len(r.Mode) == 0 || contains(r.Mode, info.Mode))
}

func (r *Route) describe(i int) string {
	if r.Reject != "" {
		return "route " + strconv.Itoa(i) + " (reject " + string(r.Reject) + ")"
	}
	to := strings.Join(r.To, " ")
	if r.Dynamic != nil {
		to = strings.TrimSpace(to + " dynamic " + r.Dynamic.Source + " " + r.Dynamic.Name)
	}
	return "route " + strconv.Itoa(i) + " (to " + to + ")"
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// glob is a pattern in which '*' stands for any run of characters,
// slashes included, as in Caddy's path matcher.
type glob struct {
	parts []string // the literal pieces between stars
	fold  bool
}

func compileGlobs(patterns []string, fold bool) ([]glob, error) {
	out := make([]glob, 0, len(patterns))
	for _, p := range patterns {
		if p == "" {
			return nil, fmt.Errorf("empty pattern")
		}
		if fold {
			p = strings.ToLower(p)
		}
		out = append(out, glob{parts: strings.Split(p, "*"), fold: fold})
	}
	return out, nil
}

// matchAny is true when there are no globs or one of them matches s.
func matchAny(globs []glob, s string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if g.match(s) {
			return true
		}
	}
	return false
}

func (g glob) match(s string) bool {
	if g.fold {
		s = strings.ToLower(s)
	}
	if len(g.parts) == 1 {
		return s == g.parts[0]
	}
	first, last := g.parts[0], g.parts[len(g.parts)-1]
	if !strings.HasPrefix(s, first) {
		return false
	}
	s = s[len(first):]
	for _, mid := range g.parts[1 : len(g.parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, last)
}

// match returns the first route that matches.
func (h *Handler) match(info *streamid.Info) (int, *Route) {
	for i, r := range h.Routes {
		if r.matches(info) {
			return i, r
		}
	}
	return -1, nil
}

// setPlaceholders sets the {l4.srt.*} placeholders of one caller from the
// redacted stream ID: placeholders end up in logs.
func setPlaceholders(repl *caddy.Replacer, info *streamid.Info) {
	repl.Set("l4.srt.stream_id", info.Raw)
	repl.Set("l4.srt.resource", info.Resource)
	repl.Set("l4.srt.host", info.Host)
	repl.Set("l4.srt.user", info.User)
	repl.Set("l4.srt.mode", info.Mode)
	repl.Set("l4.srt.session", info.Session)
	repl.Set("l4.srt.type", info.Type)
	for k, v := range info.Keys {
		repl.Set("l4.srt.key."+k, v)
	}
}

// lists reports whether addr is one of the route's upstreams now: static,
// from a placeholder for this caller, or from its dynamic source.
func (r *Route) lists(addr string, repl *caddy.Replacer) bool {
	for _, u := range r.upstreams {
		if a, err := u.resolve(repl); err == nil && a == addr {
			return true
		}
	}
	return r.pool != nil && slices.Contains(r.pool.current(), addr)
}
