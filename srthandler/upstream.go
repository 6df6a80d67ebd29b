package srthandler

import (
	"fmt"
	"net"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// upstream is one configured "to" address.
type upstream struct {
	raw string // as configured, placeholders included
	// addr is host:port, fixed at provisioning when raw has no placeholders.
	addr string
}

func parseUpstream(raw string) (*upstream, error) {
	u := &upstream{raw: raw}
	if strings.Contains(raw, "{") {
		return u, nil // resolved per caller
	}
	addr, err := dialAddress(raw)
	if err != nil {
		return nil, err
	}
	u.addr = addr
	return u, nil
}

// resolve returns the host:port to dial for one caller.
func (u *upstream) resolve(repl *caddy.Replacer) (string, error) {
	if u.addr != "" {
		return u.addr, nil
	}
	return dialAddress(repl.ReplaceAll(u.raw, ""))
}

// dialAddress turns "udp/host:port" or "host:port" into host:port.
func dialAddress(raw string) (string, error) {
	na, err := caddy.ParseNetworkAddressWithDefaults(raw, "udp", 0)
	if err != nil {
		return "", fmt.Errorf("upstream %q: %w", raw, err)
	}
	switch na.Network {
	case "udp", "udp4", "udp6":
	default:
		return "", fmt.Errorf("upstream %q: SRT runs over UDP, not %s", raw, na.Network)
	}
	if na.PortRangeSize() != 1 || na.StartPort == 0 {
		return "", fmt.Errorf("upstream %q: needs exactly one port", raw)
	}
	if na.Host == "" {
		return "", fmt.Errorf("upstream %q: needs a host", raw)
	}
	return net.JoinHostPort(na.Host, fmt.Sprint(na.StartPort)), nil
}
