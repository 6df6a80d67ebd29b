// Package srtmatcher implements the layer4.matchers.srt module.
package srtmatcher

import (
	"errors"
	"io"
	"net"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

func init() {
	caddy.RegisterModule(&MatchSRT{})
}

// MatchSRT matches a datagram that opens an SRT caller handshake (a
// handshake addressed to a listener: destination socket 0, version 4 or
// 5), and any datagram from a caller whose session this process relays,
// so a session relaying through the listener survives a reload, or
// relayed until a few seconds ago, so a caller that missed the SHUTDOWN
// is told again.
// Caddyfile syntax:
//
//	srt
type MatchSRT struct{}

// CaddyModule returns the Caddy module information.
func (*MatchSRT) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.matchers.srt",
		New: func() caddy.Module { return new(MatchSRT) },
	}
}

// Match looks at the first datagram only, through MatchingBytes: caddy-l4
// v0.1.2 prefetches at most 2048 bytes of a datagram, and a Read of a
// longer one returns 0, nil forever, which would spin a core. SRT packets
// are never larger than the MTU, so anything that fills the prefetch
// buffer is not SRT.
//
// It also matches whatever arrives in a burst, SRT or not: when a
// connection's sender has more datagrams queued behind the first, caddy-l4
// v0.1.2 deadlocks its whole UDP listener if that connection's handler
// returns before the sender stops (its server loop blocks handing a sixth
// datagram to a connection nobody reads). The srt handler drains such a
// sender until it is quiet. Put routes for other protocols sharing the
// port before the srt route.
//
// An empty first datagram is matched too (emptyFirst): asking caddy-l4
// for it would have it take the empty datagram for the end of the
// connection and give the sender up with its burst still queued (the same
// deadlock, from one source sending a few empty datagrams).
func (m *MatchSRT) Match(cx *layer4.Connection) (bool, error) {
	b := cx.MatchingBytes()
	if len(b) == 0 {
		if emptyFirst(cx) {
			return true, nil
		}
		return false, layer4.ErrConsumedAllPrefetchedBytes
	}
	if cx.HasMore() {
		return true, nil
	}
	if len(b) > wire.MaxMTU {
		return false, nil
	}
	if key, ok := session.KeyOf(cx.LocalAddr(), cx.RemoteAddr()); ok {
		if session.Default.Lookup(key) != nil {
			return true, nil
		}
		if _, ended := session.Default.Ended(key); ended {
			return true, nil // the handler tells it the session is over
		}
	}
	return IsCallerHandshake(b), nil
}

// emptyFirst reports whether the connection's first datagram, not yet
// read, is empty. A read of zero bytes takes the first datagram off
// caddy-l4's queue: it ends in io.EOF only if the datagram is empty (which
// is then gone, as it would be anyway), and otherwise leaves it whole for
// the prefetch that follows, its size noted as for any read (the
// matching deadline bounds the wait).
func emptyFirst(cx *layer4.Connection) bool {
	if _, udp := cx.LocalAddr().(*net.UDPAddr); !udp {
		return false
	}
	_, err := cx.Conn.Read(nil)
	return errors.Is(err, io.EOF)
}

// IsCallerHandshake reports whether b is a handshake a caller sends to a
// listener.
func IsCallerHandshake(b []byte) bool {
	if _, ok := wire.HandshakeTypeOf(b); !ok || wire.DestSocketOf(b) != 0 {
		return false
	}
	hs, err := wire.ParseHandshake(b)
	return err == nil && (hs.Version == 4 || hs.Version == 5)
}

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens. Syntax:
//
//	srt
func (m *MatchSRT) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	_, wrapper := d.Next(), d.Val()
	if d.CountRemainingArgs() > 0 {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("malformed layer4 connection matcher '%s': blocks are not supported", wrapper)
	}
	return nil
}

// Interface guards
var (
	_ layer4.ConnMatcher    = (*MatchSRT)(nil)
	_ caddyfile.Unmarshaler = (*MatchSRT)(nil)
)
