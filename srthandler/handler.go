// Package srthandler implements the layer4.handlers.srt module: it answers
// an SRT caller's induction with a keyed cookie, reads the stream ID from
// its conclusion, picks a route and an upstream, replays the handshake to
// that upstream, and relays the session without terminating SRT.
package srthandler

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/cookie"
	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/streamid"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

func init() {
	caddy.RegisterModule(&Handler{})
}

// Defaults.
const (
	DefaultHandshakeTimeout = 2 * time.Second
	DefaultIdleTimeout      = 30 * time.Second
	// DefaultBatchWindow is a fifth of SRT's own 10 ms control clock, so
	// what a datagram may wait is lost in the timing of the peers' ACKs
	// and retransmissions. A relay batches only when datagrams wake it
	// 1.5 times a window or more (session.batchFactor): several streams'
	// worth; a lone 10 Mbit/s stream wakes it a few hundred times a
	// second (make load).
	DefaultBatchWindow = 2 * time.Millisecond
)

// pendingBuf is the buffer a handshake in progress reads with. Handshake
// datagrams fit the MTU; a longer one arrives split by caddy-l4 and is
// dropped as malformed.
const pendingBuf = 2048

// Handler is the srt layer4 handler. Caddyfile syntax:
//
//	srt {
//		handshake_timeout <duration>   # default 2s
//		idle_timeout      <duration>   # default 30s
//		data_path         socket|ebpf|auto|listener
//		batch_window      <duration>|off # default 2ms
//		health_interval   <duration>   # active SRT checks; off by default
//		health_timeout    <duration>   # default 1s
//		health_passes     <n>          # default 2
//		health_fails      <n>          # default 2
//		max_fails         <n>          # passive: default 1 ...
//		fail_duration     <duration>|off # ... within 10s takes it out for 10s
//		max_sessions      <n>          # default 10000
//		max_pending       <n>          # handshakes in progress; default 1024
//		max_pending_per_ip <n>         # default 32
//		upstream_allow    <cidr...>    # where upstreams not in the config may be
//		route {
//			stream_id        <glob...>
//			stream_id_regexp <regexp>
//			resource         <glob...>
//			host             <glob...>
//			user             <glob...>
//			mode             publish|request|bidirectional ...
//			to        <upstream...>
//			dynamic   a <name> <port> | srv <name> | srs { refresh resolvers }
//			lb_policy stream_hash|round_robin|random|first|least_sessions
//			reject    <name|code>
//		}
//	}
type Handler struct {
	// HandshakeTimeout bounds the handshake with the upstream; the caller
	// gets a rejection when it runs out. Default 2s (callers give up at 3s).
	HandshakeTimeout caddy.Duration `json:"handshake_timeout,omitempty"`
	// IdleTimeout ends a session after this long without a packet either
	// way. Default 30s.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
	// DataPath is "socket" (default): each session gets a UDP socket of its
	// own, connected to the caller; or "listener": sessions relay through
	// the caddy-l4 connection they came in on (slower; for systems where
	// the socket cannot be made, and for testing that path); or "ebpf":
	// the socket path, with each established session's data packets
	// forwarded in the kernel by a TC program (docs/ebpf.md), where the
	// program loads and attaches, else the socket path; or "auto": ebpf
	// where it loads, else a path whose cost does not grow with sessions
	// (socket on Linux 6.13+, else listener), logged once.
	DataPath string `json:"data_path,omitempty"`
	// BatchWindow is how long, at most, the socket data path may hold a
	// datagram so that one wake-up relays several: only while datagrams
	// keep it busy, since waking up per datagram is most of what a relay
	// spends. Default 2ms; negative ("off" in the Caddyfile) relays each
	// datagram as it comes. The relay is shared by the process: while
	// sessions with different windows are live, the smallest applies.
	BatchWindow caddy.Duration `json:"batch_window,omitempty"`
	HealthOptions
	Limits
	// UpstreamAllow lists the CIDR ranges upstreams not fixed in the
	// config may be in: SRS origins that sent heartbeats (dynamic srs).
	UpstreamAllow []string `json:"upstream_allow,omitempty"`
	// Routes are tried in order; the first that matches decides.
	Routes []*Route `json:"routes,omitempty"`

	logger   *zap.Logger
	gate     *handshake.Gate
	registry *session.Registry
	passive  passivePolicy
	releases []func()
	allow    []netip.Prefix
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.handlers.srt",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults and compiles the routes.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	defaultTo(&h.HandshakeTimeout, caddy.Duration(DefaultHandshakeTimeout))
	defaultTo(&h.IdleTimeout, caddy.Duration(DefaultIdleTimeout))
	defaultTo(&h.BatchWindow, caddy.Duration(DefaultBatchWindow))
	h.HealthOptions.provision()
	h.Limits.provision()
	h.passive = h.HealthOptions.passive()
	for i, r := range h.Routes {
		if err := r.provision(); err != nil {
			return fmt.Errorf("srt route %d: %w", i, err)
		}
	}
	allow, err := parsePrefixes(h.UpstreamAllow)
	if err != nil {
		return err
	}
	h.allow = allow
	h.releases = h.startUpstreams()
	h.gate = &handshake.Gate{Jar: cookie.Process()}
	h.registry = session.Default
	registerMetrics(ctx.GetMetricsRegistry())
	return nil
}

// defaultTo sets an option left at its zero value.
func defaultTo[T comparable](opt *T, def T) {
	var zero T
	if *opt == zero {
		*opt = def
	}
}

// Validate checks the handler's options.
func (h *Handler) Validate() error {
	if h.HandshakeTimeout < 0 || h.IdleTimeout < 0 {
		return errors.New("srt: durations must not be negative")
	}
	if err := h.HealthOptions.validate(); err != nil {
		return err
	}
	if err := h.Limits.validate(); err != nil {
		return err
	}
	switch h.DataPath {
	case "", "socket", "listener", "ebpf", "auto":
	default:
		return fmt.Errorf("srt: data_path %q: want socket, ebpf, auto or listener", h.DataPath)
	}
	return nil
}

// Cleanup stops the active health checks this handler started, unless
// another configuration still watches the same upstreams. Sessions are
// not the handler's to end: they belong to the process.
func (h *Handler) Cleanup() error {
	for _, release := range h.releases {
		release()
	}
	return nil
}

// Handle serves one caddy-l4 connection: the handshake datagrams of one
// caller address, or a datagram of a session that already exists.
//
// Unless a session takes the address over, Handle returns only once the
// address has been quiet for quietPeriod. caddy-l4 v0.1.2 deadlocks its
// whole UDP listener when a connection's handler returns while its sender
// keeps sending: the server loop blocks handing a sixth queued datagram to
// a connection that nobody reads any more. So every datagram a handler
// takes on, it drains until its sender stops.
func (h *Handler) Handle(cx *layer4.Connection, _ layer4.Handler) error {
	caller, ok := session.CallerKey(cx.RemoteAddr())
	if !ok {
		return nil
	}
	buf := make([]byte, pendingBuf)
	n, err := cx.Read(buf)
	if err != nil {
		return nil
	}
	if n == 0 {
		// A first datagram longer than caddy-l4's prefetch (the matcher
		// took it as part of a burst): cx can never deliver it, so drain
		// the sender from the packet connection underneath.
		h.logger.Debug("draining oversized datagrams", zap.Stringer("caller", caller))
		drainQuiet(cx.Conn, buf)
		return nil
	}
	in := &datagramReader{cx: cx}
	if s := h.registry.Lookup(caller); s != nil {
		// Until the caller is quiet, or its session has ended and what it
		// still sends (or a new caller on its address) is served below.
		if n, err = h.rejoin(in, s, buf, n); err != nil {
			return nil
		}
	}
	var (
		lastReject  []byte // our answer to the last conclusion, for its repeats
		rejectedFor uint32
		toldEnded   time.Time
	)
	for {
		pkt := buf[:n]
		now := time.Now()
		d := h.gate.Inspect(caller, pkt, now, nil)
		switch d.Verdict {
		case handshake.Conclude:
			if lastReject != nil && d.Handshake.SocketID == rejectedFor {
				// A repeat sent before our answer arrived: same answer,
				// without a second upstream handshake.
				_, _ = cx.Conn.Write(lastReject)
				break
			}
			taken, reject := h.conclude(in, caller, pkt, &d, now)
			if taken {
				return nil
			}
			// Rejected, or a session relayed through this connection
			// has ended: either way, read on until the caller is quiet.
			lastReject, rejectedFor = reject, d.Handshake.SocketID
		case handshake.Reply:
			if _, err := cx.Conn.Write(d.Reply); err != nil {
				h.logger.Debug("answering caller", zap.Stringer("caller", caller), zap.Error(err))
			}
			if t, ok := wire.HandshakeTypeOf(d.Reply); ok && t.IsRejection() {
				countHandshake(outcomeRejected, t.Reason(), time.Time{})
			}
			h.logger.Debug("answered caller", zap.Stringer("caller", caller), zap.String("why", d.Why))
		default:
			if socket, ended := h.registry.Ended(caller); ended && now.Sub(toldEnded) >= time.Second {
				// Datagrams of a session that has ended: tell the caller
				// again, in case it missed the SHUTDOWN.
				toldEnded = now
				_, _ = cx.Conn.Write(wire.AppendShutdown(nil, socket, handshake.Timestamp(now)))
				h.logger.Debug("caller still sending after its session ended", zap.Stringer("caller", caller))
				break
			}
			h.logger.Debug("dropped datagram", zap.Stringer("caller", caller), zap.String("why", d.Why), zap.Int("size", len(pkt)))
		}
		if n, err = in.next(buf); err != nil {
			return nil
		}
	}
}

// conclude routes a caller whose conclusion carried a valid cookie.
// taken says a session took the caller's address over; otherwise reject
// is the answer the caller got.
func (h *Handler) conclude(in *datagramReader, caller netip.AddrPort, pkt []byte, d *handshake.Decision, received time.Time) (taken bool, reject []byte) {
	cx := in.cx
	hs := &d.Handshake
	info := streamid.Parse(d.Conclusion.StreamID)
	repl := cx.Replacer()
	setPlaceholders(repl, &info)
	log := h.logger.With(
		zap.String("stream_id", info.Raw),
		zap.Stringer("caller", caller),
		zap.Uint32("caller_socket", hs.SocketID),
	)
	if hs.Version < 5 {
		log = log.With(zap.Uint32("handshake_version", hs.Version))
	}

	idx, route := h.match(&info)
	if route == nil {
		return false, h.reject(cx, hs, wire.RejXNotFound, log, "no route matched")
	}
	log = log.With(zap.Int("route", idx))
	if route.reason != 0 {
		return false, h.reject(cx, hs, route.reason, log, route.describe(idx))
	}
	if live := h.registry.Len() + splicing.count(); live >= h.MaxSessions {
		return false, h.reject(cx, hs, wire.RejXOverload, log, fmt.Sprintf("max_sessions (%d) reached", h.MaxSessions))
	}
	release, ok := splicing.acquire(caller.Addr(), h.MaxPending, h.MaxPendingPerIP)
	if !ok {
		return false, h.reject(cx, hs, wire.RejXOverload, log, "too many handshakes in progress")
	}
	defer release()
	candidates, err := pick(route, &info, repl, received)
	if errors.Is(err, errNoHealthy) {
		return false, h.reject(cx, hs, wire.RejXDown, log, err.Error())
	}
	if err != nil {
		// A placeholder upstream that names nothing: the reject line says why.
		return false, h.reject(cx, hs, wire.RejXInternalError, log, err.Error())
	}

	stopDraining := drainCaller(cx)
	res, err := h.splice(&callerHello{hs: hs, conclusion: pkt, received: received, caller: caller}, candidates, log)
	stopDraining()
	release() // a session relaying through the listener holds this goroutine for its lifetime
	if err != nil {
		// down: no upstream answered at all; gateway: one answered our
		// induction but never this caller's conclusion.
		reason := wire.RejXDown
		if errors.Is(err, errNoConclusionAnswer) {
			reason = wire.RejXGateway
		}
		countHandshake(outcomeUpstreamFailed, reason, received)
		rej := handshake.RejectionFor(nil, hs, reason, time.Now())
		_, _ = cx.Conn.Write(rej)
		log.Warn("upstream handshake failed; rejected caller", zap.Stringer("reason", reason), zap.Uint32("code", uint32(reason)), zap.Error(err))
		return false, rej
	}
	log = log.With(zap.String("upstream", res.state.addr))
	repl.Set("l4.srt.upstream", res.state.addr)
	if res.rejected {
		res.state.release()
		if _, err := cx.Conn.Write(res.response); err != nil {
			log.Debug("passing rejection to caller", zap.Error(err))
		}
		countHandshake(outcomeUpstreamRejected, res.reason, received)
		log.Info("upstream rejected caller", zap.Stringer("reason", res.reason), zap.Uint32("code", uint32(res.reason)))
		return false, res.response
	}
	return h.establish(in, caller, hs, &info, idx, res, received, log)
}

func (h *Handler) reject(cx *layer4.Connection, hs *wire.Handshake, reason wire.RejectReason, log *zap.Logger, why string) []byte {
	countHandshake(outcomeRejected, reason, time.Time{})
	rej := handshake.RejectionFor(nil, hs, reason, time.Now())
	if _, err := cx.Conn.Write(rej); err != nil {
		log.Debug("sending rejection", zap.Error(err))
	}
	log.Info("rejected caller", zap.Stringer("reason", reason), zap.Uint32("code", uint32(reason)), zap.String("why", why))
	return rej
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Handler)(nil)
	_ caddy.Validator       = (*Handler)(nil)
	_ caddy.CleanerUpper    = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ layer4.NextHandler    = (*Handler)(nil)
)
