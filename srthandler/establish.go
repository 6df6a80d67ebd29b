package srthandler

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mholt/caddy-l4/layer4"
	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/streamid"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
	"go.uber.org/zap"
)

// callerLink is the caller's side of a new session: its own socket, or
// the caddy-l4 connection it came in on.
type callerLink struct {
	link session.Link
	path session.Path
	// early holds the caller's datagrams the new socket caught before
	// the session existed.
	early [][]byte
}

// openCallerLink makes the session's own socket, connected to the caller,
// unless data_path says listener or the socket cannot be made. Datagrams
// of other callers that the socket caught in the instant between its bind
// and its connect are served as the listener would have.
func (h *Handler) openCallerLink(cx *layer4.Connection, caller netip.AddrPort, log *zap.Logger) callerLink {
	if want := h.wantPath(); want != session.PathListener {
		conn, caught, err := session.DialFrom(cx.LocalAddr(), caller)
		if err == nil {
			cl := callerLink{link: conn, path: want}
			for _, st := range caught {
				if st.From == caller {
					cl.early = append(cl.early, st.Data)
				} else {
					go h.serveStray(cx, st)
				}
			}
			return cl
		}
		noteListenerFallback(log, err)
	}
	return callerLink{link: newConnLink(cx), path: session.PathListener}
}

// fellBack is set once a session fell back to the listener data path.
var fellBack atomic.Bool

// noteListenerFallback logs a session that relays through the listener
// because its own socket could not be made: at Info the first time in the
// process (the operator should know the fast path is not in use, and
// why), at Debug after that (it is likely the same reason every time).
func noteListenerFallback(log *zap.Logger, err error) {
	if fellBack.CompareAndSwap(false, true) {
		log.Info("no session socket; relaying through the listener (slower), this and later sessions alike", zap.Error(err))
		return
	}
	log.Debug("no session socket; relaying through the listener", zap.Error(err))
}

// establish turns an accepted splice into a live session.
func (h *Handler) establish(in *datagramReader, caller netip.AddrPort, hs *wire.Handshake, info *streamid.Info, route int, res *spliced, received time.Time, log *zap.Logger) (taken bool, reject []byte) {
	cx := in.cx
	cl := h.openCallerLink(cx, caller, log)
	log = log.With(zap.Uint32("upstream_socket", res.upstreamSocket))
	substitute := uint32(0)
	if res.socketID != hs.SocketID {
		substitute = res.socketID
		log = log.With(zap.Uint32("substitute_socket", substitute))
	}
	state := res.state
	log = log.With(zap.String("placement", res.placement.how))
	leave := res.placement.established(info, state.addr)
	s := session.New(session.Config{
		Listener:         sessionKey(cx, caller).Listener,
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
		Info:             &SessionInfo{Stream: *info, Route: route, SecretKeys: h.secretKeys},
		OnEnd: func(s *session.Session) {
			leave()
			state.release()
			h.noteSessionEnd(state, s, log)
			logSessionEnd(log, s, info.Redact(h.secretKeys...))
		},
	})
	if err := s.Start(h.registry, cl.link, cl.path); err != nil {
		leave()
		return h.lostRegistration(cx, caller, hs, res, cl, log, err)
	}
	cx.Replacer().Set("l4.srt.session_id", s.ID)
	noteListener(cx.LocalAddr())
	countHandshake(outcomeAccepted, 0, received)
	log.Info("session established", zap.String("session", s.ID), zap.String("data_path", s.Path().DataPath()), zap.Stringer("relay", s.Path()))
	if !s.Path().OwnSocket() {
		// The connection is not taken: once the session ends, Handle
		// reads on until the caller is quiet (see relayThrough).
		relayThrough(in, s, cl.link)
		return false, nil
	}
	for _, p := range cl.early {
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

// lostRegistration handles a session that another handler registered
// first (two caddy-l4 connections for one address, across a reload). Ours
// must not leave a dead connection at the upstream.
func (h *Handler) lostRegistration(cx *layer4.Connection, caller netip.AddrPort, hs *wire.Handshake, res *spliced, cl callerLink, log *zap.Logger, err error) (taken bool, reject []byte) {
	_, _ = res.conn.Write(wire.AppendShutdown(nil, res.upstreamSocket, handshake.Timestamp(time.Now())))
	res.conn.Close()
	res.state.release()
	if cl.path.OwnSocket() {
		cl.link.Close()
	}
	if other := h.registry.Lookup(sessionKey(cx, caller)); other != nil && other.CallerSocket == hs.SocketID {
		// The same caller, already served: give it that session's answer.
		_, _ = cx.Conn.Write(other.Response)
		return true, nil
	}
	return false, h.reject(cx, hs, wire.RejXConflict, log, err.Error())
}

// logSessionEnd writes the one Info line every session ends with: why,
// how long, and what it carried each way.
func logSessionEnd(log *zap.Logger, s *session.Session, info streamid.Info) {
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

// rejoin hands buf[:n], a datagram that reached the listener, to the
// session of its caller: one in flight while the session socket was being
// made, or, for a session relaying through the listener, the first after a
// reload gave the caller a new caddy-l4 connection. It relays until the
// caller is quiet (the error), or until the session has ended: it then
// returns, in buf, the first datagram the session did not take, for
// Handle to serve. That may be a new caller that got the same address.
func (h *Handler) rejoin(in *datagramReader, s *session.Session, buf []byte, n int) (int, error) {
	if !s.Path().OwnSocket() {
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

// sessionKey is the registry key of caller on the listener of cx.
func sessionKey(cx *layer4.Connection, caller netip.AddrPort) session.Key {
	l, _ := session.CallerKey(cx.LocalAddr())
	return session.Key{Listener: l, Caller: caller}
}

// SessionInfo is what the handler records about a session.
type SessionInfo struct {
	Stream streamid.Info
	Route  int
	// SecretKeys name the keys of Stream, besides s, never to show.
	SecretKeys []string
}
