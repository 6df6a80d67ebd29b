package session

import (
	"sync/atomic"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
	"go.uber.org/zap"
)

// What every data path does with each datagram, whatever relays it:
// count it, read the ACKs, see SHUTDOWNs, answer late handshakes.

// Direction counters.
type counter struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
}

func (c *counter) add(n int) {
	c.packets.Add(1)
	c.bytes.Add(uint64(n))
}

// linkStats holds the measurements of the last full ACK one side sent.
type linkStats struct {
	rtt, rttVar, packetRate, byteRate, capacity atomic.Uint32
	seen                                        atomic.Bool
}

func (l *linkStats) note(p []byte) {
	if a, ok := wire.ParseACK(p); ok {
		l.rtt.Store(a.RTT)
		l.rttVar.Store(a.RTTVar)
		l.packetRate.Store(a.PacketRate)
		l.byteRate.Store(a.ByteRate)
		l.capacity.Store(a.Capacity)
		l.seen.Store(true)
	}
}

func (l *linkStats) load() (wire.ACK, bool) {
	return wire.ACK{RTT: l.rtt.Load(), RTTVar: l.rttVar.Load(), PacketRate: l.packetRate.Load(),
		ByteRate: l.byteRate.Load(), Capacity: l.capacity.Load()}, l.seen.Load()
}

// FromCaller relays one datagram from the caller. The handler calls it for
// datagrams that reached the listener socket instead of the session's own
// (those in flight while the session socket was being set up). Once the
// session has ended it takes nothing and reports false: the datagram may
// be a new caller's that got the same address, and the listener must
// serve it as such, not this session refuse it.
func (s *Session) FromCaller(p []byte) bool {
	if s.ended() {
		return false
	}
	relay, shutdown := s.takeFromCaller(p)
	if !relay {
		return true
	}
	if _, err := s.up.Write(p); err != nil && !s.ended() && isRefused(err) {
		s.upstreamRefused()
	} else if err != nil && !s.ended() {
		s.Logger.Debug("writing to upstream", zap.String("session", s.ID), zap.Error(err))
	}
	if shutdown {
		s.End(EndCallerShutdown, nil)
	}
	return true
}

// takeFromCaller does what both relays do with a datagram from the
// caller before passing it on: a handshake to no socket is answered here
// and not relayed (see callerHandshake); what the guard refuses is
// dropped (guard.go); anything else is counted and observed. shutdown reports a SHUTDOWN, which ends the session once it
// has been passed on.
func (s *Session) takeFromCaller(p []byte) (relay, shutdown bool) {
	if wire.DestSocketOf(p) == 0 && wire.IsControl(p) && wire.ControlTypeOf(p) == wire.CtrlHandshake {
		s.callerHandshake(p)
		return false, false
	}
	if !s.admit(p, s.UpstreamSocket, 0) {
		return false, false
	}
	s.fromCaller.add(len(p))
	return true, observe(p, &s.callerACK)
}

// takeFromUpstream does what both relays do with a datagram from the
// upstream before passing it on: drop what the guard refuses (guard.go),
// readdress it if the upstream knows the caller by a substitute socket
// ID, count and observe it.
func (s *Session) takeFromUpstream(p []byte) (relay, shutdown bool) {
	if !s.admit(p, s.CallerSocket, s.SubstituteSocket) {
		return false, false
	}
	if s.SubstituteSocket != 0 {
		wire.SetDestSocket(p, s.CallerSocket)
	}
	s.fromUpstream.add(len(p))
	s.upstreamAnswered()
	return true, observe(p, &s.upstreamACK)
}

// observe reads what the relay wants from a datagram it passed on: the
// link figures of a full ACK from its sender, and whether it was a
// SHUTDOWN.
func observe(p []byte, acks *linkStats) (shutdown bool) {
	if !wire.IsControl(p) {
		return false
	}
	switch wire.ControlTypeOf(p) {
	case wire.CtrlACK:
		acks.note(p)
	case wire.CtrlShutdown:
		return true
	}
	return false
}

// callerHandshake answers a handshake the caller sends after its session
// is up: a repeated conclusion (our response was lost) gets the cached
// response; a handshake from another socket ID on the same address means
// the caller restarted, which ends this session once the old caller has
// gone quiet.
func (s *Session) callerHandshake(p []byte) {
	hs, err := wire.ParseHandshake(p)
	if err != nil {
		return
	}
	if hs.SocketID == s.CallerSocket {
		switch hs.Type {
		case wire.HSConclusion:
			_, _ = s.currentLink().Write(s.Response)
		case wire.HSInduction:
			d := s.Gate.Inspect(s.Caller, p, time.Now(), nil)
			if d.Verdict == handshake.Reply {
				_, _ = s.currentLink().Write(d.Reply)
			}
		}
		return
	}
	silent := time.Since(time.Unix(0, s.lastCaller.Load()))
	if silent < TakeoverSilence {
		// Refuse the newcomer; the live caller ignores a handshake that is
		// addressed to another socket.
		s.Logger.Debug("refusing handshake from a new socket on a live caller's address",
			zap.String("session", s.ID), zap.Stringer("caller", s.Caller),
			zap.Uint32("caller_socket", s.CallerSocket), zap.Uint32("new_socket", hs.SocketID))
		if (hs.Version == 4 || hs.Version == 5) && (hs.Type == wire.HSInduction || hs.Type == wire.HSConclusion) {
			_, _ = s.currentLink().Write(handshake.RejectionFor(nil, &hs, wire.RejXConflict, time.Now()))
		}
		return
	}
	// The new caller repeats its handshake (libsrt every 250 ms); once this
	// session's socket is gone the repeat reaches the listener.
	s.End(EndCallerRestarted, nil)
}
