package session

import (
	"fmt"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Origin loss. A session's upstream socket is connected, so when the
// origin process dies the kernel answers the next datagram we send it
// with "connection refused" (an ICMP port unreachable, reported on the
// socket). Left alone, the caller would learn nothing until its own peer
// idle timeout (5 s in libsrt). One refusal is not proof: an ICMP error
// can be forged by anyone who knows the four-tuple. So the first refusal
// only makes the session suspicious and sends the upstream a keepalive
// of our own refusalConfirm later; a second refusal at least that long
// after the first, with nothing from the upstream in between, ends the
// session both ways (SHUTDOWN to the caller, nothing to the dead
// upstream). Any datagram from the upstream clears the suspicion: a live
// origin sends ACKs or data every few milliseconds and keepalives at
// least every second.

const (
	// refusalConfirm is how long after a first refusal a second one
	// proves the origin gone, and when the probe goes out.
	refusalConfirm = 100 * time.Millisecond
	// refusalStale forgets a first refusal that nothing confirmed: a
	// later one starts a new suspicion instead of ending the session.
	refusalStale = 3 * time.Second
)

// upstreamRefused notes a "connection refused" on the upstream socket,
// from a read or a write, on any data path.
func (s *Session) upstreamRefused() {
	if s.ended() {
		return
	}
	now := time.Now().UnixNano()
	first := s.refusedSince.Load()
	if first != 0 && now-first >= int64(refusalConfirm) && now-first < int64(refusalStale) {
		s.End(EndUpstreamGone, fmt.Errorf("upstream %s refuses datagrams: nothing listens there any more", s.UpstreamAddr))
		return
	}
	if first != 0 && now-first < int64(refusalStale) {
		return // within the confirmation window: wait for the probe's answer
	}
	if s.refusedSince.CompareAndSwap(first, now) {
		time.AfterFunc(refusalConfirm, s.probeUpstream)
	}
}

// upstreamAnswered clears a suspicion: the upstream sent something. It is
// on the per-datagram path, so it reads before it writes.
func (s *Session) upstreamAnswered() {
	if s.refusedSince.Load() != 0 {
		s.refusedSince.Store(0)
	}
}

// probeUpstream sends the upstream a keepalive while the session is
// suspicious, so that a dead origin is confirmed even when the caller
// sends nothing (a player waiting for data). A live SRT peer takes a
// keepalive as a sign of life and nothing more.
func (s *Session) probeUpstream() {
	if s.ended() || s.refusedSince.Load() == 0 {
		return
	}
	ka := wire.Header{Control: true, Type: wire.CtrlKeepalive, Timestamp: handshake.Timestamp(time.Now()), DestSocket: s.UpstreamSocket}.Append(nil)
	ka = append(ka, 0, 0, 0, 0)
	if _, err := s.up.Write(ka); err != nil && isRefused(err) {
		s.upstreamRefused()
	}
}
