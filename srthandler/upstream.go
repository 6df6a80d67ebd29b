package srthandler

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

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

// upstreamState is what the process knows about one upstream address. It
// is shared by every route and every configuration that names the
// address, so counts survive reloads.
type upstreamState struct {
	addr     string
	sessions atomic.Int64 // live sessions, handshakes in progress included
}

var upstreamStates sync.Map // host:port → *upstreamState

func stateOf(addr string) *upstreamState {
	if s, ok := upstreamStates.Load(addr); ok {
		return s.(*upstreamState)
	}
	s, _ := upstreamStates.LoadOrStore(addr, &upstreamState{addr: addr})
	return s.(*upstreamState)
}
