package srthandler

import (
	"errors"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/session"
)

// noteSessionEnd feeds what a session's end says about its upstream into
// passive health: an origin that went away mid-stream (session.EndUpstreamGone)
// counts as a failure, so that its callers, reconnecting at once, are
// sent to another upstream rather than back to the dead one.
func (h *Handler) noteSessionEnd(state *upstreamState, s *session.Session, log *zap.Logger) {
	if reason, _ := s.Reason(); reason != session.EndUpstreamGone {
		return
	}
	if state.recordFailure(time.Now(), h.passive) {
		log.Warn("upstream taken out: it went away under a live session",
			zap.String("upstream", state.addr), zap.Duration("for", h.passive.failDuration))
	}
}

// isLocalFailure reports an error that says this process, not the
// upstream, is in trouble: out of file descriptors or socket memory.
// Such a failure must not mark the upstream down (every upstream would
// go down together, and stay down after the process recovered).
func isLocalFailure(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
