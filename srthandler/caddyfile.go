package srthandler

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens; see Handler
// for the syntax.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	_, wrapper := d.Next(), d.Val()
	if d.CountRemainingArgs() > 0 {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt != "route" && seen[opt] {
			return d.Errf("%s: option '%s' given twice", wrapper, opt)
		}
		seen[opt] = true
		switch opt {
		case "handshake_timeout", "idle_timeout", "health_interval", "health_timeout", "fail_duration", "batch_window", "grace_period":
			if d.CountRemainingArgs() != 1 {
				return d.ArgErr()
			}
			d.NextArg()
			dur, err := caddy.ParseDuration(d.Val())
			if (opt == "fail_duration" || opt == "batch_window") && d.Val() == "off" {
				dur, err = -1, nil
			}
			if err != nil {
				return d.Errf("%s: %s: %v", wrapper, opt, err)
			}
			*map[string]*caddy.Duration{
				"handshake_timeout": &h.HandshakeTimeout,
				"idle_timeout":      &h.IdleTimeout,
				"health_interval":   &h.HealthInterval,
				"health_timeout":    &h.HealthTimeout,
				"fail_duration":     &h.FailDuration,
				"batch_window":      &h.BatchWindow,
				"grace_period":      &h.GracePeriod,
			}[opt] = caddy.Duration(dur)
		case "health_passes", "health_fails", "max_fails", "max_sessions", "max_pending", "max_pending_per_ip", "max_sessions_per_ip", "handshake_rate_per_ip":
			if d.CountRemainingArgs() != 1 {
				return d.ArgErr()
			}
			d.NextArg()
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 {
				return d.Errf("%s: %s: want a positive whole number, got %q", wrapper, opt, d.Val())
			}
			*map[string]*int{
				"health_passes":         &h.HealthPasses,
				"health_fails":          &h.HealthFails,
				"max_fails":             &h.MaxFails,
				"max_sessions":          &h.MaxSessions,
				"max_pending":           &h.MaxPending,
				"max_pending_per_ip":    &h.MaxPendingPerIP,
				"max_sessions_per_ip":   &h.MaxSessionsPerIP,
				"handshake_rate_per_ip": &h.HandshakeRatePerIP,
			}[opt] = n
		case "upstream_allow":
			if err := h.unmarshalAllow(d); err != nil {
				return err
			}
		case "data_path":
			if d.CountRemainingArgs() != 1 {
				return d.ArgErr()
			}
			d.NextArg()
			h.DataPath = d.Val()
		case "directory", "publisher_conflict":
			if err := h.unmarshalDirectory(d, opt); err != nil {
				return err
			}
		case "route":
			r := new(Route)
			if err := r.unmarshalCaddyfile(d); err != nil {
				return err
			}
			h.Routes = append(h.Routes, r)
		default:
			return d.Errf("unrecognized %s option '%s'", wrapper, opt)
		}
	}
	return nil
}

func (r *Route) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.CountRemainingArgs() > 0 {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("route: option '%s' given twice", opt)
		}
		seen[opt] = true
		if opt == "dynamic" {
			dyn, err := unmarshalDynamic(d)
			if err != nil {
				return err
			}
			r.Dynamic = dyn
			continue
		}
		args := d.RemainingArgs()
		one := func() (string, error) {
			if len(args) != 1 {
				return "", d.ArgErr()
			}
			return args[0], nil
		}
		var err error
		switch opt {
		case "stream_id":
			r.StreamID = args
		case "resource":
			r.Resource = args
		case "host":
			r.Host = args
		case "user":
			r.User = args
		case "mode":
			r.Mode = args
		case "to":
			r.To = args
		case "stream_id_regexp":
			r.StreamIDRegexp, err = one()
		case "lb_policy":
			r.LBPolicy, err = one()
		case "reject":
			var v string
			v, err = one()
			r.Reject = Rejection(v)
		case "auth":
			if r.Auth, err = unmarshalAuth(d, args); err != nil {
				return err
			}
			continue // its block is read
		default:
			return d.Errf("unrecognized route option '%s'", opt)
		}
		if err != nil {
			return err
		}
		if len(args) == 0 {
			return d.Errf("route: option '%s' needs a value", opt)
		}
		if d.NextBlock(d.Nesting()) {
			return d.Errf("route: option '%s' takes no block", opt)
		}
	}
	return nil
}

// unmarshalDynamic reads a route's dynamic source (see DynamicUpstreams):
// Caddy's reverse_proxy syntax for a and srv.
func unmarshalDynamic(d *caddyfile.Dispenser) (*DynamicUpstreams, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Errf("dynamic: want a, srv or srs")
	}
	dyn := &DynamicUpstreams{Source: args[0]}
	switch {
	case dyn.Source == "a" && len(args) == 3:
		dyn.Name, dyn.Port = args[1], args[2]
	case dyn.Source == "srv" && len(args) == 2:
		dyn.Name = args[1]
	case dyn.Source == "srs" && len(args) == 1:
	default:
		return nil, d.Errf("dynamic: want 'a <name> <port>', 'srv <name>' or 'srs', got %q", args)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		vals := d.RemainingArgs()
		if len(vals) == 0 {
			return nil, d.Errf("dynamic: option '%s' needs a value", opt)
		}
		switch opt {
		case "refresh":
			if len(vals) != 1 {
				return nil, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(vals[0])
			if err != nil {
				return nil, d.Errf("dynamic: refresh: %v", err)
			}
			dyn.Refresh = caddy.Duration(dur)
		case "resolvers":
			dyn.Resolvers = append(dyn.Resolvers, vals...)
		default:
			return nil, d.Errf("unrecognized dynamic option '%s'", opt)
		}
	}
	return dyn, nil
}
