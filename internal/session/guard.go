package session

import (
	"sync/atomic"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// The guard decides which control packets a session passes on. A control
// packet is acted on by the peer it names (its destination socket ID) and
// by this relay (a SHUTDOWN ends the session): one that names another
// socket is a forgery, from anyone who can put the caller's address, or
// the origin's address and our upstream port, on a datagram. One shaped
// as no SRT peer sends it would reach code in the other peer that trusts
// its shape. Both are dropped and counted; data packets are not looked at
// beyond their header (a peer ignores a data packet for another socket).

// Why a control packet was dropped.
const (
	DropSocketID  = "socket_id" // addressed to a socket other than the session's
	DropMalformed = "malformed" // lengths or ranges no SRT peer sends
)

// droppedControl counts control packets the guard dropped, process-wide,
// by why: [0] socket_id, [1] malformed.
var droppedControl [2]atomic.Uint64

// DroppedControl reports the control packets sessions dropped, by why
// (DropSocketID, DropMalformed), since the process started.
func DroppedControl() map[string]uint64 {
	return map[string]uint64{
		DropSocketID:  droppedControl[0].Load(),
		DropMalformed: droppedControl[1].Load(),
	}
}

// admit reports whether a control packet addressed to dest (one of the
// IDs the receiving peer answers to) may pass. Data packets always may.
func (s *Session) admit(p []byte, dest, alt uint32) bool {
	if !wire.IsControl(p) {
		return true
	}
	if id := wire.DestSocketOf(p); id != dest && (alt == 0 || id != alt) {
		droppedControl[0].Add(1)
		s.dropped.Add(1)
		return false
	}
	if wire.CheckControl(p) != nil {
		droppedControl[1].Add(1)
		s.dropped.Add(1)
		return false
	}
	return true
}
