// Package srthandler implements the layer4.handlers.srt module: it answers
// an SRT caller's induction with a keyed cookie, reads the stream ID from
// its conclusion, picks a route and an upstream, replays the handshake to
// that upstream, and relays the session without terminating SRT.
package srthandler

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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
//		data_path         socket|listener
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
//		route {
//			stream_id        <glob...>
//			stream_id_regexp <regexp>
//			resource         <glob...>
//			host             <glob...>
//			user             <glob...>
//			mode             publish|request|bidirectional ...
//			to        <upstream...>
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
	// the socket cannot be made, and for testing that path).
	DataPath string `json:"data_path,omitempty"`
	// BatchWindow is how long, at most, the socket data path may hold a
	// datagram so that one wake-up relays several: only while datagrams
	// keep it busy, since waking up per datagram is most of what a relay
	// spends. Default 2ms; negative ("off" in the Caddyfile) relays each
	// datagram as it comes. The relay is shared by the process: while
	// sessions with different windows are live, the smallest applies.
	BatchWindow caddy.Duration `json:"batch_window,omitempty"`
	// HealthInterval turns on active health checks: every interval each
	// upstream gets an SRT induction, and is healthy while it answers with
	// one within HealthTimeout. Off by default.
	HealthInterval caddy.Duration `json:"health_interval,omitempty"`
	// HealthTimeout bounds one check. Default 1s.
	HealthTimeout caddy.Duration `json:"health_timeout,omitempty"`
	// HealthPasses and HealthFails are how many checks in a row bring an
	// upstream back or take it out. Default 2 each.
	HealthPasses int `json:"health_passes,omitempty"`
	HealthFails  int `json:"health_fails,omitempty"`
	// MaxFails failed handshakes (timeouts, refusals) within FailDuration
	// take an upstream out for FailDuration. Defaults 1 and 10s; a
	// negative FailDuration ("off" in the Caddyfile) turns this off.
	MaxFails     int            `json:"max_fails,omitempty"`
	FailDuration caddy.Duration `json:"fail_duration,omitempty"`
	// MaxSessions caps the live sessions of the process; callers beyond it
	// are rejected with overload (1402). Default 10000.
	MaxSessions int `json:"max_sessions,omitempty"`
	// MaxPending caps the handshakes in progress in the process, and
	// MaxPendingPerIP those from one source IP. Over either, an induction
	// is still answered but nothing waits for its conclusion, and a
	// conclusion is rejected with overload. Defaults 1024 and 32.
	MaxPending      int `json:"max_pending,omitempty"`
	MaxPendingPerIP int `json:"max_pending_per_ip,omitempty"`
	// Routes are tried in order; the first that matches decides.
	Routes []*Route `json:"routes,omitempty"`

	logger   *zap.Logger
	gate     *handshake.Gate
	registry *session.Registry
	passive  passivePolicy
	releases []func()
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
	defaultTo(&h.HealthTimeout, caddy.Duration(DefaultHealthTimeout))
	defaultTo(&h.HealthPasses, DefaultHealthPasses)
	defaultTo(&h.HealthFails, DefaultHealthFails)
	defaultTo(&h.MaxFails, DefaultMaxFails)
	defaultTo(&h.FailDuration, caddy.Duration(DefaultFailDuration))
	defaultTo(&h.MaxSessions, DefaultMaxSessions)
	defaultTo(&h.MaxPending, DefaultMaxPending)
	defaultTo(&h.MaxPendingPerIP, DefaultMaxPendingPerIP)
	h.passive = passivePolicy{maxFails: h.MaxFails, failDuration: time.Duration(h.FailDuration)}
	for i, r := range h.Routes {
		if err := r.provision(); err != nil {
			return fmt.Errorf("srt route %d: %w", i, err)
		}
	}
	if h.HealthInterval > 0 {
		probe := probeConfig{
			interval: time.Duration(h.HealthInterval),
			timeout:  time.Duration(h.HealthTimeout),
			passes:   h.HealthPasses,
			fails:    h.HealthFails,
		}
		watched := map[string]bool{}
		for _, r := range h.Routes {
			for _, u := range r.upstreams {
				if u.addr != "" && !watched[u.addr] {
					watched[u.addr] = true
					h.releases = append(h.releases, stateOf(u.addr).watch(probe, h.logger))
				}
			}
		}
	}
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
	if h.HandshakeTimeout < 0 || h.IdleTimeout < 0 || h.HealthInterval < 0 || h.HealthTimeout < 0 {
		return errors.New("srt: durations must not be negative")
	}
	if h.HealthPasses < 0 || h.HealthFails < 0 || h.MaxFails < 0 || h.MaxSessions < 0 || h.MaxPending < 0 || h.MaxPendingPerIP < 0 {
		return errors.New("srt: counts and limits must not be negative")
	}
	if h.HealthInterval > 0 && h.HealthTimeout > h.HealthInterval {
		return fmt.Errorf("srt: health_timeout %v is longer than health_interval %v", time.Duration(h.HealthTimeout), time.Duration(h.HealthInterval))
	}
	switch h.DataPath {
	case "", "socket", "listener":
	default:
		return fmt.Errorf("srt: data_path %q: want socket or listener", h.DataPath)
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
		case "handshake_timeout", "idle_timeout", "health_interval", "health_timeout", "fail_duration", "batch_window":
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
			}[opt] = caddy.Duration(dur)
		case "health_passes", "health_fails", "max_fails", "max_sessions", "max_pending", "max_pending_per_ip":
			if d.CountRemainingArgs() != 1 {
				return d.ArgErr()
			}
			d.NextArg()
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 {
				return d.Errf("%s: %s: want a positive whole number, got %q", wrapper, opt, d.Val())
			}
			*map[string]*int{
				"health_passes":      &h.HealthPasses,
				"health_fails":       &h.HealthFails,
				"max_fails":          &h.MaxFails,
				"max_sessions":       &h.MaxSessions,
				"max_pending":        &h.MaxPending,
				"max_pending_per_ip": &h.MaxPendingPerIP,
			}[opt] = n
		case "data_path":
			if d.CountRemainingArgs() != 1 {
				return d.ArgErr()
			}
			d.NextArg()
			h.DataPath = d.Val()
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

// quietPeriod is how long a handler waits for the next datagram of a
// caller before letting its connection go. caddy-l4's packet deadlines
// have one-second precision, so this must be at least that.
//
// Every read of a caddy-l4 connection here has a deadline of at most
// quietPeriod, so the connection's own idle timer (the layer4 server's
// idle_timeout, 30 s by default; it must not be set below quietPeriod)
// never fires while a handler reads it. That matters because caddy-l4
// then reports the end of the connection as io.EOF, the same way it
// reports an empty datagram.
const quietPeriod = 2 * time.Second

// datagramReader reads whole datagrams from a caddy-l4 connection: an
// empty one as (0, nil), one caddy-l4 cannot deliver as errOversize.
type datagramReader struct {
	cx   *layer4.Connection
	held []byte // a datagram read elsewhere, for next to return first
}

func (d *datagramReader) Read(b []byte) (int, error) {
	n, err := d.cx.Read(b)
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return 0, nil // an empty datagram: see quietPeriod
	case n == 0 && err == nil:
		return 0, errOversize
	}
	return n, err
}

// next reads the caller's next datagram, or fails after quietPeriod.
func (d *datagramReader) next(buf []byte) (int, error) {
	if d.held != nil {
		n := copy(buf, d.held)
		d.held = nil
		return n, nil
	}
	if err := d.cx.SetReadDeadline(time.Now().Add(quietPeriod)); err != nil {
		return 0, err
	}
	n, err := d.Read(buf)
	_ = d.cx.SetReadDeadline(time.Time{})
	return n, err
}

// unread has next return p, once, before reading on.
func (d *datagramReader) unread(p []byte) { d.held = append(d.held[:0], p...) }

var errOversize = errors.New("datagram larger than caddy-l4 can deliver")

// drainQuiet reads and discards from c, caddy-l4's packet connection,
// until nothing came for quietPeriod (io.EOF is an empty datagram: see
// quietPeriod).
func drainQuiet(c net.Conn, buf []byte) {
	for {
		if err := c.SetReadDeadline(time.Now().Add(quietPeriod)); err != nil {
			return
		}
		if _, err := c.Read(buf); err != nil && !errors.Is(err, io.EOF) {
			return
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

// establish turns an accepted splice into a live session.
func (h *Handler) establish(in *datagramReader, caller netip.AddrPort, hs *wire.Handshake, info *streamid.Info, route int, res *spliced, received time.Time, log *zap.Logger) (taken bool, reject []byte) {
	cx := in.cx
	var (
		link   session.Link
		fast   bool
		own    [][]byte // the caller's datagrams the new socket caught early
		strays []session.Stray
	)
	if h.DataPath != "listener" {
		conn, caught, err := session.DialFrom(cx.LocalAddr(), caller)
		if err == nil {
			link, fast = conn, true
			for _, st := range caught {
				if st.From == caller {
					own = append(own, st.Data)
				} else {
					strays = append(strays, st)
				}
			}
		} else {
			log.Debug("no session socket; relaying through the listener", zap.Error(err))
		}
	}
	for _, st := range strays {
		go h.serveStray(cx, st)
	}
	if link == nil {
		link = newConnLink(cx)
	}
	log = log.With(zap.Uint32("upstream_socket", res.upstreamSocket))
	if res.socketID != hs.SocketID {
		log = log.With(zap.Uint32("substitute_socket", res.socketID))
	}
	substitute := uint32(0)
	if res.socketID != hs.SocketID {
		substitute = res.socketID
	}
	state := res.state
	s := session.New(session.Config{
		Caller:           caller,
		CallerSocket:     hs.SocketID,
		Upstream:         res.conn,
		UpstreamAddr:     state.addr,
		UpstreamSocket:   res.upstreamSocket,
		SubstituteSocket: substitute,
		Response:         res.response,
		IdleTimeout:      time.Duration(h.IdleTimeout),
		BatchWindow:      max(0, time.Duration(h.BatchWindow)),
		Gate:             h.gate,
		Logger:           log,
		Info:             &SessionInfo{Stream: *info, Route: route, FastPath: fast},
		OnEnd: func(s *session.Session) {
			state.release()
			reason, err := s.Reason()
			st := s.Stats()
			fields := []zap.Field{
				zap.String("session", s.ID),
				zap.String("resource", info.Resource),
				zap.String("mode", info.Mode),
				zap.String("user", info.User),
				zap.String("host", info.Host),
				zap.String("reason", string(reason)),
				zap.Duration("duration", time.Since(s.Started)),
				zap.Uint64("packets_from_caller", st.FromCaller),
				zap.Uint64("bytes_from_caller", st.FromCallerBytes),
				zap.Uint64("packets_from_upstream", st.FromUpstream),
				zap.Uint64("bytes_from_upstream", st.FromUpstreamBytes),
			}
			if err != nil {
				fields = append(fields, zap.Error(err))
			}
			log.Info("session ended", fields...)
		},
	})
	if err := s.Start(h.registry, link, fast); err != nil {
		// Another handler registered this caller first (two caddy-l4
		// connections for one address, across a reload). Ours must not
		// leave a dead connection at the upstream.
		_, _ = res.conn.Write(wire.AppendShutdown(nil, res.upstreamSocket, handshake.Timestamp(time.Now())))
		res.conn.Close()
		state.release()
		if fast {
			link.Close()
		}
		if other := h.registry.Lookup(caller); other != nil && other.CallerSocket == hs.SocketID {
			// The same caller, already served: give it that session's answer.
			_, _ = cx.Conn.Write(other.Response)
			return true, nil
		}
		return false, h.reject(cx, hs, wire.RejXConflict, log, err.Error())
	}
	repl := cx.Replacer()
	repl.Set("l4.srt.session_id", s.ID)
	countHandshake(outcomeAccepted, 0, received)
	log.Info("session established", zap.String("session", s.ID), zap.Bool("session_socket", fast))
	if fast {
		for _, p := range own {
			s.FromCaller(p)
		}
		// What caddy-l4 queued for this caller before the session socket
		// existed still belongs to the session.
		buf := make([]byte, pendingBuf)
		for cx.HasMore() {
			n, err := cx.Read(buf)
			if err != nil || n == 0 {
				break
			}
			s.FromCaller(buf[:n])
		}
		return true, nil
	}
	// The connection is not taken: once the session ends, Handle reads
	// on until the caller is quiet (see relayThrough).
	relayThrough(in, s, link)
	return false, nil
}

// relayThrough relays a session through the caddy-l4 connection in reads
// until the session ends, and leaves to in.next the datagram the session
// read but did not take. Its caller may still be sending then (it has
// not seen the SHUTDOWN yet), and a connection nobody reads deadlocks
// caddy-l4 v0.1.2's listener (see Handle): the handler reads on.
func relayThrough(in *datagramReader, s *session.Session, link session.Link) {
	if p := s.ServeLink(link); p != nil {
		in.unread(p)
	}
}

// serveStray serves a datagram of another caller that a new session
// socket caught in the instant between its bind and its connect (see
// session.DialFrom): as if caddy-l4 had delivered it, with answers sent
// from the listener's socket.
func (h *Handler) serveStray(listener *layer4.Connection, st session.Stray) {
	if s := h.registry.Lookup(st.From); s != nil && s.FromCaller(st.Data) {
		return
	}
	pc, ok := listener.Conn.(net.PacketConn)
	if !ok {
		return
	}
	h.logger.Debug("serving a datagram a new session socket caught", zap.Stringer("caller", st.From))
	conn := &strayConn{pc: pc, local: listener.LocalAddr(), remote: net.UDPAddrFromAddrPort(st.From), first: st.Data}
	_ = h.Handle(layer4.WrapConnection(conn, nil, h.logger), nil)
}

// errStrayDone ends a stray's handling after its one datagram: the
// caller's later datagrams reach the listener as usual.
var errStrayDone = errors.New("no more datagrams on this path")

// strayConn presents one caught datagram to Handle as a caddy-l4
// connection would, and sends answers from the listener's socket.
type strayConn struct {
	pc            net.PacketConn
	local, remote net.Addr
	first         []byte
	read          bool
}

func (c *strayConn) Read(b []byte) (int, error) {
	if c.read {
		return 0, errStrayDone
	}
	c.read = true
	return copy(b, c.first), nil
}

func (c *strayConn) Write(b []byte) (int, error)      { return c.pc.WriteTo(b, c.remote) }
func (c *strayConn) Close() error                     { return nil }
func (c *strayConn) LocalAddr() net.Addr              { return c.local }
func (c *strayConn) RemoteAddr() net.Addr             { return c.remote }
func (c *strayConn) SetDeadline(time.Time) error      { return nil }
func (c *strayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *strayConn) SetWriteDeadline(time.Time) error { return nil }

// rejoin hands buf[:n], a datagram that reached the listener, to the
// session of its caller: one in flight while the session socket was being
// made, or, for a session relaying through the listener, the first after a
// reload gave the caller a new caddy-l4 connection. It relays until the
// caller is quiet (the error), or until the session has ended: it then
// returns, in buf, the first datagram the session did not take, for
// Handle to serve. That may be a new caller that got the same address.
func (h *Handler) rejoin(in *datagramReader, s *session.Session, buf []byte, n int) (int, error) {
	if !s.FastPath() {
		link := newConnLink(in.cx)
		s.Attach(link)
		if !s.FromCaller(buf[:n]) {
			return n, nil
		}
		relayThrough(in, s, link)
		return in.next(buf)
	}
	// New datagrams of this caller go to the session socket, so this
	// ends soon.
	for {
		if n > 0 && !s.FromCaller(buf[:n]) {
			return n, nil
		}
		var err error
		if n, err = in.next(buf); err != nil {
			return 0, err
		}
	}
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

// leastSessionsMu makes ordering by session count and taking a count one
// step, so that concurrent callers do not all pick the same upstream.
var leastSessionsMu sync.Mutex

var errNoHealthy = errors.New("no healthy upstream")

// pick orders the route's healthy upstreams for this caller and takes a
// session count on the first.
func pick(r *Route, info *streamid.Info, repl *caddy.Replacer, now time.Time) ([]*upstreamState, error) {
	pool := make([]*upstreamState, 0, len(r.upstreams))
	for _, u := range r.upstreams {
		var s *upstreamState
		if u.addr != "" {
			s = stateOf(u.addr)
		} else {
			addr, err := u.resolve(repl)
			if err != nil {
				return nil, err
			}
			s = dynamicStateOf(addr)
		}
		if s.healthy(now) {
			pool = append(pool, s)
		}
	}
	if len(pool) == 0 {
		return nil, errNoHealthy
	}
	key := info.Host + "\x00" + info.Resource
	if _, ok := r.policy.(LeastSessions); ok {
		leastSessionsMu.Lock()
		defer leastSessionsMu.Unlock()
	}
	r.policy.Order(pool, key)
	pool[0].acquire()
	return pool, nil
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

// drainCaller keeps reading the caller while the upstream handshake runs:
// a libsrt caller repeats its conclusion every 250 ms, and a caddy-l4
// connection whose queue fills stalls the whole listener. The repeats need
// no answer until the upstream's response exists.
func drainCaller(cx *layer4.Connection) (stop func()) {
	l := newConnLink(cx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, pendingBuf)
		for {
			if _, err := l.Read(buf); err != nil {
				return
			}
		}
	}()
	return func() {
		_ = l.Close()
		<-done
		_ = cx.SetReadDeadline(time.Time{})
	}
}

// connLink relays a session through the caddy-l4 connection its caller
// came in on.
type connLink struct {
	cx     *layer4.Connection
	in     datagramReader
	closed atomic.Bool
}

func newConnLink(cx *layer4.Connection) *connLink {
	return &connLink{cx: cx, in: datagramReader{cx: cx}}
}

var errLinkClosed = errors.New("caller link closed")

// Read waits in quietPeriod steps (see there) until a datagram comes or
// the link is closed.
func (l *connLink) Read(b []byte) (int, error) {
	for {
		if err := l.cx.SetReadDeadline(time.Now().Add(quietPeriod)); err != nil {
			return 0, err
		}
		// Checked after setting the deadline: Close's own deadline may
		// just have been overwritten.
		if l.closed.Load() {
			return 0, errLinkClosed
		}
		n, err := l.in.Read(b)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		return n, err
	}
}

// Write goes straight to the underlying packet connection, which is safe
// for concurrent use, unlike the Connection's byte counters.
func (l *connLink) Write(b []byte) (int, error) { return l.cx.Conn.Write(b) }

// Close unblocks Read; the connection itself belongs to caddy-l4.
func (l *connLink) Close() error {
	l.closed.Store(true)
	return l.cx.SetReadDeadline(time.Now())
}

// SessionInfo is what the handler records about a session.
type SessionInfo struct {
	Stream   streamid.Info
	Route    int
	FastPath bool
}

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

// Interface guards
var (
	_ caddy.Provisioner     = (*Handler)(nil)
	_ caddy.Validator       = (*Handler)(nil)
	_ caddy.CleanerUpper    = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ layer4.NextHandler    = (*Handler)(nil)
)
