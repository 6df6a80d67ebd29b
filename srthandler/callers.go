package srthandler

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mholt/caddy-l4/layer4"
	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
	"go.uber.org/zap"
)

// What Handle does with each datagram of a caller, by the gate's verdict.

// handling is what Handle remembers of its caller between datagrams.
type handling struct {
	lastReject  []byte // our answer to the last conclusion, for its repeats
	rejectedFor uint32
	toldEnded   time.Time
	rel         release // release.go: letting go of unverified callers
	lingers     bool    // holds one of the lingerMax places
}

// lingerMax is how many callers with nothing pending may keep their
// handler reading until they are quiet (quietPeriod), as a caller whose
// conclusion is still to come needs, before the rest are let go at once
// (release.go). Letting go delays the answer to a caller by about
// releaseQuiet + replyDelay (a tenth of a libsrt caller's 250 ms repeat,
// but ten times a loopback handshake), so it is kept for when callers
// with nothing pending crowd in: a spoofed flood fills these places at
// once, ordinary traffic never.
const lingerMax = 256

// lingering counts the places taken, process-wide.
var lingering atomic.Int64

// letGo lets the caller go at once (release.go) unless it may linger.
func (hd *handling) letGo() {
	if hd.lingers || hd.rel.closing {
		return
	}
	if lingering.Add(1) <= lingerMax {
		hd.lingers = true
		return
	}
	lingering.Add(-1)
	hd.rel.start()
}

// done gives back the place the caller lingered in; Handle defers it.
func (hd *handling) done() {
	if hd.lingers {
		hd.lingers = false
		lingering.Add(-1)
	}
	hd.rel.finish()
}

// onConclusion acts on a conclusion with a valid cookie; taken says a
// session took the caller's address over.
func (h *Handler) onConclusion(hd *handling, in *datagramReader, caller netip.AddrPort, pkt []byte, d *handshake.Decision, now time.Time) (taken bool) {
	if hd.rel.closing {
		// In the instant caddy-l4 drops the connection, which a session
		// could not outlive; the caller's repeat (libsrt: 250 ms) finds
		// a new connection.
		return false
	}
	if hd.lastReject != nil && d.Handshake.SocketID == hd.rejectedFor {
		// A repeat sent before our answer arrived: same answer, without
		// a second upstream handshake.
		_, _ = in.cx.Conn.Write(hd.lastReject)
		return false
	}
	taken, reject := h.conclude(in, caller, pkt, d, now)
	// Rejected, or a session relayed through this connection has ended:
	// either way, Handle reads on until the caller is quiet.
	hd.lastReject, hd.rejectedFor = reject, d.Handshake.SocketID
	return taken
}

// onReply sends the gate's answer: a cookie, or a rejection of a
// malformed handshake.
func (h *Handler) onReply(hd *handling, caller netip.AddrPort, d *handshake.Decision) {
	if hd.lastReject == nil {
		hd.letGo() // nothing pending: an unverified caller costs nothing once answered
	}
	if err := hd.rel.write(d.Reply); err != nil {
		h.logger.Debug("answering caller", zap.Stringer("caller", caller), zap.Error(err))
	}
	if t, ok := wire.HandshakeTypeOf(d.Reply); ok && t.IsRejection() {
		countHandshake(outcomeRejected, t.Reason(), time.Time{})
	}
	h.logger.Debug("answered caller", zap.Stringer("caller", caller), zap.String("why", d.Why))
}

// onOther handles a datagram that is no handshake the gate acts on: from
// a caller whose session has ended it gets the SHUTDOWN again (at most a
// second apart, in case it missed it); anything else is dropped.
func (h *Handler) onOther(hd *handling, cx *layer4.Connection, caller netip.AddrPort, pkt []byte, d *handshake.Decision, now time.Time) {
	socket, ended := h.registry.Ended(sessionKey(cx, caller))
	if ended && now.Sub(hd.toldEnded) >= time.Second {
		hd.toldEnded = now
		_, _ = cx.Conn.Write(wire.AppendShutdown(nil, socket, handshake.Timestamp(now)))
		h.logger.Debug("caller still sending after its session ended", zap.Stringer("caller", caller))
		return
	}
	if hd.lastReject == nil && !ended {
		hd.letGo()
	}
	h.logger.Debug("dropped datagram", zap.Stringer("caller", caller), zap.String("why", d.Why), zap.Int("size", len(pkt)))
}
