// Package srthandler implements the layer4.handlers.srt module: it answers
// an SRT caller's induction with a keyed cookie, reads the stream ID from
// its conclusion, picks a route and an upstream, replays the handshake to
// that upstream, and relays the session without terminating SRT.
package srthandler

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/cookie"
	"github.com/srtroute/caddy-l4-srt/internal/directory"
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

// Handler is the srt layer4 handler. Caddyfile syntax:
//
//	srt {
//		handshake_timeout <duration>   # default 2s
//		idle_timeout      <duration>   # default 30s
//		grace_period      <duration>   # on process stop; default 0
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
//		max_pending_per_ip <n>         # default 32 (an IPv6 /64 counts as one IP)
//		max_sessions_per_ip <n>        # sessions of one IP or IPv6 /64; default 1000
//		handshake_rate_per_ip <n>      # conclusions a second of one source; default 1000
//		upstream_allow    <CIDR...>    # where placeholder upstreams and SRS origins may be
//		directory redis <host:port> { password db key_prefix ttl }
//		publisher_conflict follow|reject
//		grace_period      <duration>   # on stop: live sessions may run this long
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
//			auth http <url> { timeout <d>; cache <d>; on_error reject|allow }
//			auth jwt { key <secret|pem file> | jwks <url>; param <key> }
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
	SourceLimits
	// UpstreamAllow lists the CIDR prefixes upstreams that callers or
	// heartbeats name may be in: placeholder upstreams (which need it,
	// allow.go) and SRS origins that register (dynamic srs).
	UpstreamAllow []string `json:"upstream_allow,omitempty"`
	// Directory shares the stream directory (stream key -> the upstream of
	// its live publisher) through Redis; default: this process's memory.
	Directory *DirectoryConfig `json:"directory,omitempty"`
	// PublisherConflict is what a second publisher of a live stream gets:
	// "follow" (default: the same upstream) or "reject" (conflict, 1409).
	PublisherConflict string `json:"publisher_conflict,omitempty"`
	// GracePeriod is how long live sessions may go on when the process
	// stops (not on a reload), while new callers get overload (1402);
	// then every session gets a SHUTDOWN both ways. Default 0.
	GracePeriod caddy.Duration `json:"grace_period,omitempty"`
	// Routes are tried in order; the first that matches decides.
	Routes []*Route `json:"routes,omitempty"`

	logger   *zap.Logger
	gate     *handshake.Gate
	registry *session.Registry
	passive  passivePolicy
	releases []func()

	// secretKeys are the stream ID keys besides s whose values are never
	// shown: the params auth jwt routes read their tokens from.
	secretKeys []string
	mirror     *directory.Mirror // the shared directory store, if any
	cfgCtx     context.Context   // its configuration's, to tell a stop from a reload (stop.go)
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
	h.cfgCtx = ctx.Context
	defaultTo(&h.HandshakeTimeout, caddy.Duration(DefaultHandshakeTimeout))
	defaultTo(&h.IdleTimeout, caddy.Duration(DefaultIdleTimeout))
	defaultTo(&h.BatchWindow, caddy.Duration(DefaultBatchWindow))
	h.HealthOptions.provision()
	h.Limits.provision()
	h.SourceLimits.provision()
	h.passive = h.HealthOptions.passive()
	for i, r := range h.Routes {
		if err := r.provision(); err != nil {
			return fmt.Errorf("srt route %d: %w", i, err)
		}
	}
	if err := h.provisionAllow(); err != nil {
		return err
	}
	if err := h.provisionAuth(ctx); err != nil {
		return err
	}
	h.releases = append(h.releases, h.startUpstreams()...)
	h.gate = &handshake.Gate{Jar: cookie.Process()}
	h.registry = session.Default
	registerMetrics(ctx.GetMetricsRegistry())
	h.provisionDirectory(h.logger)
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
	if h.HandshakeTimeout < 0 || h.IdleTimeout < 0 || h.GracePeriod < 0 {
		return errors.New("srt: durations must not be negative")
	}
	if err := h.HealthOptions.validate(); err != nil {
		return err
	}
	if err := h.Limits.validate(); err != nil {
		return err
	}
	if err := h.SourceLimits.validate(); err != nil {
		return err
	}
	if err := h.validateAllow(); err != nil {
		return err
	}
	if err := h.validateAuth(); err != nil {
		return err
	}
	if err := h.validateDirectory(); err != nil {
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
// not the handler's to end: they belong to the process, and end only
// when the process stops running configurations (see stop.go).
func (h *Handler) Cleanup() error {
	for _, release := range h.releases {
		release()
	}
	h.cleanupAuth()
	if h.lastConfig() {
		h.stopSessions()
	}
	return nil
}

// Handle serves one caddy-l4 connection: the handshake datagrams of one
// caller address, or a datagram of a session that already exists.
//
// caddy-l4 v0.1.2 deadlocks its whole UDP listener when a connection's
// handler returns while its sender keeps sending: the server loop blocks
// handing a sixth queued datagram to a connection that nobody reads any
// more. So a handler returns only once its sender is quiet: a caller with
// nothing pending (answered or dropped, no session, no rejection to
// repeat) once caddy-l4 has dropped its connection (release.go), any
// other once the address has been quiet for quietPeriod.
func (h *Handler) Handle(cx *layer4.Connection, _ layer4.Handler) error {
	caller, ok := session.CallerKey(cx.RemoteAddr())
	if !ok {
		return nil
	}
	buf := make([]byte, pendingBuf)
	in := &datagramReader{cx: cx}
	// The first datagram: the one the matcher saw, or, when it matched a
	// sender whose first datagram was empty, whatever comes next (an
	// empty one goes through the gate as any other packet that is no SRT).
	n, err := in.next(buf)
	if errors.Is(err, errOversize) {
		// A first datagram longer than caddy-l4's prefetch (the matcher
		// took it as part of a burst): cx can never deliver it, so drain
		// the sender from the packet connection underneath.
		h.logger.Debug("draining oversized datagrams", zap.Stringer("caller", caller))
		drainQuiet(cx.Conn, buf)
		return nil
	}
	if err != nil {
		return nil
	}
	if s := h.registry.Lookup(sessionKey(cx, caller)); s != nil {
		// Until the caller is quiet, or its session has ended and what it
		// still sends (or a new caller on its address) is served below.
		if n, err = h.rejoin(in, s, buf, n); err != nil {
			return nil
		}
	}
	hd := handling{rel: release{cx: cx}}
	defer hd.done()
	for {
		pkt := buf[:n]
		now := time.Now()
		d := h.gate.Inspect(caller, pkt, now, nil)
		switch d.Verdict {
		case handshake.Conclude:
			if h.onConclusion(&hd, in, caller, pkt, &d, now) {
				return nil
			}
		case handshake.Reply:
			h.onReply(&hd, caller, &d)
		default:
			h.onOther(&hd, cx, caller, pkt, &d, now)
		}
		if hd.rel.closing {
			var done bool
			if n, done = hd.rel.next(buf); done {
				return nil
			}
			continue
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
	shown := info.Redact(h.secretKeys...) // for logs and placeholders: never a secret
	repl := cx.Replacer()
	setPlaceholders(repl, &shown)
	log := h.logger.With(
		zap.String("stream_id", shown.Raw),
		zap.Stringer("caller", caller),
		zap.Uint32("caller_socket", hs.SocketID),
	)
	if hs.Version < 5 {
		log = log.With(zap.Uint32("handshake_version", hs.Version))
	}

	idx, route, reason, why := h.admit(caller, &info, received)
	if route != nil {
		log = log.With(zap.Int("route", idx))
	}
	if reason != 0 {
		return false, h.reject(cx, hs, reason, log, why)
	}
	release, ok := splicing.acquire(sourceOf(caller), h.MaxPending, h.MaxPendingPerIP)
	if !ok {
		return false, h.reject(cx, hs, wire.RejXOverload, log, "too many handshakes in progress")
	}
	defer release()
	if h.sourceFull(sourceOf(caller)) {
		return false, h.reject(cx, hs, wire.RejXOverload, log, fmt.Sprintf("max_sessions_per_ip (%d) reached", h.MaxSessionsPerIP))
	}
	authPlaced, refused := h.authorize(in, route, &info, caller, hs, received, log)
	if refused != nil {
		return false, refused
	}
	candidates, placed, err := h.place(route, &info, repl, received, authPlaced)
	defer placed.abandon()
	if err != nil {
		return false, h.reject(cx, hs, placeReason(err), log, err.Error())
	}

	stopDraining := drainCaller(cx)
	res, err := h.splice(&callerHello{hs: hs, conclusion: pkt, received: received, caller: caller}, candidates, log)
	stopDraining()
	release() // a session relaying through the listener holds this goroutine for its lifetime
	if err != nil {
		return false, h.upstreamFailed(cx, hs, err, received, log)
	}
	log = log.With(zap.String("upstream", res.state.addr))
	repl.Set("l4.srt.upstream", res.state.addr)
	if res.rejected {
		return false, h.passRejection(cx, res, received, log)
	}
	res.placement = placed
	return h.establish(in, caller, hs, &info, idx, res, received, log)
}

// admit runs the checks that need nothing held: drain and stop, the
// source's handshake rate, the routes, the session limit. A zero reason
// admits the caller to route (number idx).
func (h *Handler) admit(caller netip.AddrPort, info *streamid.Info, received time.Time) (idx int, route *Route, reason wire.RejectReason, why string) {
	if reason, why := admissionClosed(); reason != 0 {
		return -1, nil, reason, why
	}
	if !h.handshakeAllowed(caller, received) {
		return -1, nil, wire.RejXOverload, fmt.Sprintf("handshake_rate_per_ip (%d/s) reached", h.HandshakeRatePerIP)
	}
	idx, route = h.match(info)
	switch {
	case route == nil:
		return -1, nil, wire.RejXNotFound, "no route matched"
	case route.reason != 0:
		return idx, route, route.reason, route.describe(idx)
	}
	if live := h.registry.Len() + splicing.count(); live >= h.MaxSessions {
		return idx, route, wire.RejXOverload, fmt.Sprintf("max_sessions (%d) reached", h.MaxSessions)
	}
	return idx, route, 0, ""
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
