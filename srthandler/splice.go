package srthandler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/mholt/caddy-l4/layer4"
	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// spliced is an upstream's answer to a replayed handshake.
type spliced struct {
	conn  *net.UDPConn // connected to the upstream; nil after a rejection
	state *upstreamState
	// socketID is the ID the upstream knows the caller by: the caller's
	// own, or a substitute after a retried handshake.
	socketID       uint32
	upstreamSocket uint32
	response       []byte
	rejected       bool
	reason         wire.RejectReason
	placement      *placement // set once accepted, for establish
}

// callerHello is the caller's side of a splice.
type callerHello struct {
	hs         *wire.Handshake
	conclusion []byte
	received   time.Time
	caller     netip.AddrPort
}

// conclusionSendsPerAttempt is how often a conclusion is sent on one
// socket before the handshake is restarted on a fresh socket with a fresh
// socket ID. libsrt listeners answer a repeated conclusion, so one resend
// suffices for them; gosrt listeners never answer a repeat, and only a
// handshake that looks new recovers from a lost response. Restart early:
// gosrt anchors its delivery clock to the moment the conclusion reaches
// it, so every millisecond of delay here is added to that session's
// latency for good.
const conclusionSendsPerAttempt = 2

// maxSpliceAttempts bounds the fresh starts of one caller's handshake
// with one upstream: the second recovers a lost response; an upstream
// that answers neither is ignoring this caller's conclusion, and waiting
// out the whole handshake_timeout would hold a handshake slot and send
// the upstream ever more for one conclusion from the caller.
const maxSpliceAttempts = 2

var (
	errUpstreamTimeout    = errors.New("upstream did not answer the handshake in time")
	errUpstreamSilent     = errors.New("upstream did not answer the induction")
	errNoConclusionAnswer = errors.New("upstream answered the induction but not the caller's conclusion")
)

// splice replays the caller's handshake to each candidate in turn until one
// accepts or rejects it, all within the handshake timeout. The first
// candidate arrives with its session count taken (see pick); splice takes
// the count of each further one it tries and gives back the count of each
// that fails, so the count of the one that answered passes to the caller.
func (h *Handler) splice(c *callerHello, candidates []*upstreamState, log *zap.Logger) (*spliced, error) {
	deadline := c.received.Add(time.Duration(h.HandshakeTimeout))
	var lastErr error = errUpstreamTimeout
	tried := 0
	for i, up := range candidates {
		now := time.Now()
		if !now.Before(deadline) {
			break
		}
		// Every candidate but the last must answer its induction within
		// half of what is left, so that a silent one leaves time for the next.
		inductionBy := deadline
		if i < len(candidates)-1 {
			inductionBy = now.Add(max(deadline.Sub(now)/2, 500*time.Millisecond))
			inductionBy = minTime(inductionBy, deadline)
		}
		if i > 0 {
			up.acquire()
		}
		tried = i + 1
		res, err := h.replay(c, up, inductionBy, deadline, log)
		if err == nil {
			return res, nil
		}
		up.release()
		lastErr = err
		log.Warn("upstream handshake failed", zap.String("upstream", up.addr), zap.Error(err))
		if errors.Is(err, errNoConclusionAnswer) {
			// The upstream is alive (it answered our induction) but said
			// nothing to this caller's conclusion: gosrt drops ones it
			// cannot parse. Neither its health nor another upstream is
			// the remedy.
			return nil, err
		}
		if isLocalFailure(err) {
			// Another upstream would fail the same way: not its fault.
			return nil, err
		}
		if up.recordFailure(time.Now(), h.passive) {
			log.Warn("upstream taken out after failed handshakes",
				zap.String("upstream", up.addr), zap.Duration("for", h.passive.failDuration))
		}
	}
	if tried == 0 {
		candidates[0].release() // pick's count, for a candidate never tried
	}
	return nil, lastErr
}

// replay runs the handshake with one upstream.
func (h *Handler) replay(c *callerHello, up *upstreamState, inductionBy, deadline time.Time, log *zap.Logger) (*spliced, error) {
	socketID := c.hs.SocketID
	buf := make([]byte, pendingBuf)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		nc, err := (&net.Dialer{}).DialContext(ctx, "udp", up.addr)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("dialing upstream %s: %w", up.addr, err)
		}
		conn := nc.(*net.UDPConn)
		upIP := conn.RemoteAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		d, err := handshake.NewDialer(handshake.DialerConfig{
			Conclusion: c.conclusion,
			Received:   c.received,
			SocketID:   socketID,
			UpstreamIP: upIP,
			CallerIP:   c.caller.Addr(),
		})
		if err != nil {
			conn.Close()
			return nil, err
		}
		res, retry, err := h.runAttempt(conn, d, up, inductionBy, deadline, buf)
		if err != nil || !retry {
			if res == nil || res.rejected {
				conn.Close()
			}
			if res != nil {
				res.socketID = socketID
			}
			return res, err
		}
		conn.Close()
		if attempt >= maxSpliceAttempts {
			return nil, errNoConclusionAnswer
		}
		socketID = substituteSocketID(c.hs.SocketID)
		log.Debug("upstream did not answer the conclusion; restarting the handshake with a new socket ID",
			zap.String("upstream", up.addr), zap.Int("attempt", attempt+1), zap.Uint32("substitute_socket", socketID))
	}
}

// runAttempt drives one Dialer over one socket. retry asks for a fresh
// attempt; otherwise res or err is final.
func (h *Handler) runAttempt(conn *net.UDPConn, d *handshake.Dialer, up *upstreamState, inductionBy, deadline time.Time, buf []byte) (res *spliced, retry bool, err error) {
	if _, err := conn.Write(d.Start(time.Now())); err != nil {
		return nil, false, upstreamWriteError(up, err)
	}
	for {
		wake := minTime(d.NextRetry(), deadline)
		if !d.InConclusion() {
			wake = minTime(wake, inductionBy)
		}
		if err := conn.SetReadDeadline(wake); err != nil {
			return nil, false, err
		}
		n, err := conn.Read(buf)
		now := time.Now()
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
			case errors.Is(err, syscall.ECONNREFUSED):
				return nil, false, fmt.Errorf("upstream %s refused the handshake (nothing listens there)", up.addr)
			default:
				return nil, false, fmt.Errorf("reading from upstream %s: %w", up.addr, err)
			}
			switch {
			case !now.Before(deadline) && d.InConclusion():
				return nil, false, errNoConclusionAnswer
			case !now.Before(deadline):
				return nil, false, errUpstreamTimeout
			case !d.InConclusion() && !now.Before(inductionBy):
				return nil, false, errUpstreamSilent
			case d.InConclusion() && d.ConclusionSends() >= conclusionSendsPerAttempt && !now.Before(d.NextRetry()):
				return nil, true, nil
			}
			if p := d.Retry(now); p != nil {
				if _, err := conn.Write(p); err != nil {
					return nil, false, upstreamWriteError(up, err)
				}
			}
			continue
		}
		switch d.Receive(now, buf[:n]) {
		case handshake.Send:
			if _, err := conn.Write(d.Packet()); err != nil {
				return nil, false, upstreamWriteError(up, err)
			}
		case handshake.Accepted:
			if err := conn.SetReadDeadline(time.Time{}); err != nil {
				return nil, false, err
			}
			resp := d.Response()
			hs, _ := wire.ParseHandshake(resp)
			return &spliced{conn: conn, state: up, upstreamSocket: hs.SocketID, response: resp}, false, nil
		case handshake.Rejected:
			return &spliced{state: up, response: d.Response(), rejected: true, reason: d.RejectReason()}, false, nil
		}
	}
}

func upstreamWriteError(up *upstreamState, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("upstream %s refused the handshake (nothing listens there)", up.addr)
	}
	return fmt.Errorf("writing to upstream %s: %w", up.addr, err)
}

// substituteSocketID picks a socket ID for a retried handshake. libsrt
// reads bit 30 as "group", so IDs stay below it, like libsrt's own.
func substituteSocketID(not uint32) uint32 {
	for {
		id := rand.Uint32N(1<<30-1) + 1
		if id != not {
			return id
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// upstreamFailed rejects a caller whose upstream handshake failed: down
// when no upstream answered at all, gateway when one answered our
// induction but never this caller's conclusion.
func (h *Handler) upstreamFailed(cx *layer4.Connection, hs *wire.Handshake, err error, received time.Time, log *zap.Logger) []byte {
	reason := wire.RejXDown
	if errors.Is(err, errNoConclusionAnswer) {
		reason = wire.RejXGateway
	}
	countHandshake(outcomeUpstreamFailed, reason, received)
	rej := handshake.RejectionFor(nil, hs, reason, time.Now())
	_, _ = cx.Conn.Write(rej)
	log.Warn("upstream handshake failed; rejected caller", zap.Stringer("reason", reason), zap.Uint32("code", uint32(reason)), zap.Error(err))
	return rej
}

// passRejection gives the caller the upstream's own rejection, unchanged.
func (h *Handler) passRejection(cx *layer4.Connection, res *spliced, received time.Time, log *zap.Logger) []byte {
	res.state.release()
	if _, err := cx.Conn.Write(res.response); err != nil {
		log.Debug("passing rejection to caller", zap.Error(err))
	}
	countHandshake(outcomeUpstreamRejected, res.reason, received)
	log.Info("upstream rejected caller", zap.Stringer("reason", res.reason), zap.Uint32("code", uint32(res.reason)))
	return res.response
}
