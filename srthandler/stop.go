package srthandler

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/ebpf"
	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Process exit versus reload. Sessions belong to the process, so a
// handler's Cleanup leaves them alone when another configuration takes
// over (a reload). Caddy runs the same Cleanup when it stops running
// configurations altogether: `caddy stop`, SIGTERM/SIGINT (both through
// caddy's exitProcess, which sets caddy.Exiting and calls caddy.Stop), or
// an embedding program's caddy.Stop(). What tells the two apart: on a
// reload, Caddy makes the new configuration the active one
// (caddy.ActiveContext) before it cleans up the old one; caddy.Stop
// cleans up the configuration that is still the active one. A failed
// load cleans up a configuration that never became active. So a Cleanup
// whose own configuration is still active, or one during caddy.Exiting,
// is the end: every live session gets a SHUTDOWN both ways, after the
// grace_period.

// stopping is set while the process stops and its grace_period runs: new
// callers get overload (1402).
var stopping atomic.Bool

// listenAddrs are the local addresses sessions were started on (the
// listeners'), to answer new callers on during a grace_period: Caddy's
// listeners are closed by then. Bounded by the listeners configured.
var listenAddrs sync.Map // string → net.Addr

func noteListener(a net.Addr) {
	if _, ok := listenAddrs.Load(a.String()); !ok {
		listenAddrs.Store(a.String(), a)
	}
}

// lastConfig reports whether the handler's configuration is being
// stopped with no other to follow it.
func (h *Handler) lastConfig() bool {
	if caddy.Exiting() {
		return true
	}
	return h.cfgCtx != nil && caddy.ActiveContext().Context == h.cfgCtx
}

// stopWait bounds how long stopSessions waits for ended sessions to
// close their sockets.
const stopWait = 2 * time.Second

// stopSessions ends every live session of the process: after the
// grace_period, if set, during which new callers get overload; then
// SHUTDOWN both ways, and their sockets closed before it returns.
func (h *Handler) stopSessions() {
	if session.Default.Len() == 0 {
		return
	}
	log := h.logger
	if grace := time.Duration(h.GracePeriod); grace > 0 {
		stopping.Store(true)
		defer stopping.Store(false)
		closeAnswer := h.answerWhileStopping(log)
		defer closeAnswer()
		log.Info("stopping: live sessions may run for the grace period; new callers get overload (1402)",
			zap.Duration("grace_period", grace), zap.Int("sessions", session.Default.Len()))
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) && session.Default.Len() > 0 {
			time.Sleep(min(50*time.Millisecond, time.Until(deadline)))
		}
	}
	endAllSessions(log)
}

// endAllSessions sends every live session's SHUTDOWNs both ways and waits
// (up to stopWait) for their sockets to close.
func endAllSessions(log *zap.Logger) {
	live := session.Default.Sessions()
	for _, s := range live {
		s.End(session.EndStopped, nil)
	}
	waitUntil := time.After(stopWait)
	for _, s := range live {
		finished := make(chan struct{})
		go func() { s.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-waitUntil:
			log.Warn("stopping: sessions still closing", zap.Duration("waited", stopWait))
			return
		}
	}
	if len(live) > 0 {
		log.Info("stopped: ended every live session with a SHUTDOWN both ways", zap.Int("sessions", len(live)))
	}
}

// A reload to a configuration without an srt handler leaves the sessions
// running (reloads end nothing) and no handler to end them at exit:
// Caddy's process-exit hook does, with no grace period.
func init() {
	caddy.OnExit(func(context.Context) {
		log := caddy.Log().Named("layer4.handlers.srt")
		if session.Default.Len() > 0 {
			endAllSessions(log)
		}
		// The ebpf path unloads with its last session; this detaches what
		// a session that did not close in time left attached.
		if err := ebpf.Close(); err != nil {
			log.Warn("detaching the ebpf data path", zap.Error(err))
		}
	})
}

// answerWhileStopping opens a socket on each listener address and answers
// new callers there: an induction with its cookie, a conclusion with
// overload (1402). The caddy-l4 listener is closed by now, so without it
// a new caller would wait out its own connect timeout. The returned
// function closes the sockets and waits for their readers.
func (h *Handler) answerWhileStopping(log *zap.Logger) (closeAll func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	listenAddrs.Range(func(_, v any) bool {
		c, err := session.ListenShared(v.(net.Addr))
		if err != nil {
			log.Warn("stopping: cannot answer new callers", zap.Error(err))
			return true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			h.refuseAll(ctx, c)
		}()
		return true
	})
	return func() { cancel(); wg.Wait() }
}

// refuseAll answers handshakes on c until ctx ends. Each datagram costs
// one bounded reply, like the listener's own handshake answers.
func (h *Handler) refuseAll(ctx context.Context, c *net.UDPConn) {
	buf := make([]byte, pendingBuf)
	for ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return
		}
		now := time.Now()
		caller := netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) // as CallerKey keys it
		d := h.gate.Inspect(caller, buf[:n], now, nil)
		switch d.Verdict {
		case handshake.Reply:
			_, _ = c.WriteToUDPAddrPort(d.Reply, from)
		case handshake.Conclude:
			countHandshake(outcomeRejected, wire.RejXOverload, time.Time{})
			_, _ = c.WriteToUDPAddrPort(handshake.RejectionFor(nil, &d.Handshake, wire.RejXOverload, now), from)
		}
	}
}
