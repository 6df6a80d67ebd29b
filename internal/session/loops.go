package session

import (
	"errors"
	"fmt"
	"net"

	"go.uber.org/zap"
)

// The relay loops of the goroutine data paths (PathSocket, PathListener);
// the reactor (reactor_linux.go) replaces both on PathReactor.

// relayBuf is the read buffer of each relay loop. SRT packets never
// exceed the MTU (1500 bytes); a longer datagram arrives truncated and was
// garbage anyway. Small buffers keep an idle session small.
const relayBuf = 2048

// upstreamLoop relays from the upstream socket to the caller link.
func (s *Session) upstreamLoop() {
	defer s.leaveLoop()
	buf := make([]byte, relayBuf)
	for {
		n, err := s.Upstream.Read(buf)
		if err != nil {
			if s.ended() {
				return
			}
			if isRefused(err) {
				// An ICMP error from an earlier write: see origin.go.
				s.upstreamRefused()
				continue
			}
			s.End(EndUpstreamError, fmt.Errorf("reading from upstream %s: %w", s.UpstreamAddr, err))
			return
		}
		p := buf[:n]
		relay, shutdown := s.takeFromUpstream(p)
		if !relay {
			continue
		}
		if _, err := s.currentLink().Write(p); err != nil && !s.ended() {
			if errors.Is(err, net.ErrClosed) {
				s.hold(p)
			} else {
				s.Logger.Debug("writing to caller", zap.String("session", s.ID), zap.Error(err))
			}
		}
		if shutdown {
			s.End(EndUpstreamShutdown, nil)
			return
		}
	}
}

func (s *Session) callerLoop(l Link) (leftover []byte) {
	buf := make([]byte, relayBuf)
	for {
		n, err := l.Read(buf)
		if err != nil {
			if s.ended() || s.currentLink() != l {
				return nil
			}
			if isRefused(err) {
				continue
			}
			s.End(EndCallerError, fmt.Errorf("reading from caller %s: %w", s.Caller, err))
			return nil
		}
		if n == 0 {
			continue
		}
		if !s.FromCaller(buf[:n]) {
			return buf[:n]
		}
	}
}

// maxHeld bounds the datagrams kept for a caller whose link went away.
const maxHeld = 1024

// hold keeps a datagram for the caller whose link's socket is closed: on
// the listener data path a reload closes the listener socket the session
// writes through, and the caller's next datagram attaches a new link.
// Until then, what the upstream sends waits here instead of being lost.
func (s *Session) hold(p []byte) {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	if l := s.currentLink(); l != nil {
		if _, err := l.Write(p); err == nil {
			return // re-attached meanwhile
		}
	}
	if len(s.held) < maxHeld {
		s.held = append(s.held, append([]byte(nil), p...))
	}
}
