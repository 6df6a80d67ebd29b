package srthandler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/srtroute/caddy-l4-srt/internal/fleet"
)

// upstream_allow: where an upstream a caller can name may be. A
// placeholder upstream (udp/{l4.srt.host}:10080) is written by the
// caller; without a fence it is a UDP port scanner into the proxy's
// network (a closed port answers down at once, an open one differently).
// Configured upstreams and an auth callback's answer are the operator's
// and pass unchecked.

// errNotAllowed: a caller-named upstream outside upstream_allow.
var errNotAllowed = errors.New("upstream outside upstream_allow")

// allowResolveTimeout bounds the lookup of a host name a caller put in a
// placeholder upstream.
const allowResolveTimeout = 500 * time.Millisecond

// allowList is the parsed upstream_allow.
type allowList []netip.Prefix

// parseAllowList reads CIDR prefixes; a bare address is a one-address
// prefix.
func parseAllowList(items []string) (allowList, error) {
	var out allowList
	for _, s := range items {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("srt: upstream_allow %q: want a CIDR prefix such as 10.0.0.0/8", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// contains reports whether a is in the list; an empty list holds nothing
// (fleet.Within would let everything in).
func (l allowList) contains(a netip.Addr) bool {
	return len(l) > 0 && fleet.Within(l, a)
}

// provisionAllow parses upstream_allow and gives every route the list.
func (h *Handler) provisionAllow() error {
	allow, err := parseAllowList(h.UpstreamAllow)
	if err != nil {
		return err
	}
	for _, r := range h.Routes {
		r.allow = allow
	}
	return nil
}

// validateAllow refuses a placeholder upstream without upstream_allow.
func (h *Handler) validateAllow() error {
	if _, err := parseAllowList(h.UpstreamAllow); err != nil {
		return err
	}
	if len(h.UpstreamAllow) > 0 {
		return nil
	}
	for i, r := range h.Routes {
		for _, to := range r.To {
			if strings.Contains(to, "{") {
				return fmt.Errorf("srt route %d: upstream %q has placeholders: callers choose where it points, so upstream_allow <CIDR...> must fence it", i, to)
			}
		}
	}
	return nil
}

// allowed checks host:port from a placeholder upstream against the
// route's allowlist and returns the address to dial: the IP itself, so
// that what was checked is what is dialled (a name is looked up once
// here, and every address it has must be allowed).
func (r *Route) allowed(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("placeholder upstream %q: %w", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("placeholder upstream %q: bad port", addr)
	}
	var ips []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), allowResolveTimeout)
		ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		if err != nil || len(ips) == 0 {
			return "", fmt.Errorf("placeholder upstream %q: %w: cannot resolve it", addr, errNotAllowed)
		}
	}
	for _, a := range ips {
		if a.Zone() != "" || !r.allow.contains(a) {
			return "", fmt.Errorf("placeholder upstream %q: %w", addr, errNotAllowed)
		}
	}
	return net.JoinHostPort(ips[0].Unmap().String(), port), nil
}

// unmarshalAllow reads `upstream_allow <CIDR...>`.
func (h *Handler) unmarshalAllow(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	h.UpstreamAllow = append(h.UpstreamAllow, args...)
	return nil
}
