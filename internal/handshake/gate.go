package handshake

import (
	"errors"
	"net/netip"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/cookie"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Verdict is what the Gate decided about a datagram from a caller.
type Verdict int

// Verdicts of Gate.Inspect.
const (
	// Drop: say nothing (not ours, or not worth an answer).
	Drop Verdict = iota
	// Reply: send Decision.Reply back to the caller; nothing else to do.
	Reply
	// Conclude: a conclusion with a valid cookie, ready to be routed.
	Conclude
)

func (v Verdict) String() string {
	switch v {
	case Reply:
		return "reply"
	case Conclude:
		return "conclude"
	}
	return "drop"
}

// Decision is the Gate's answer for one datagram.
type Decision struct {
	Verdict Verdict
	// Reply is the datagram to send for Verdict Reply.
	Reply []byte
	// Handshake and Conclusion describe the caller for Verdict Conclude.
	Handshake  wire.Handshake
	Conclusion wire.ConclusionInfo
	// Why says, for logs, why a datagram was dropped or answered.
	Why string
}

// Gate answers the first half of every caller's handshake on the relay's
// behalf. It holds no per-caller state: everything a conclusion needs is
// in the conclusion and its cookie.
type Gate struct {
	Jar *cookie.Jar
}

// Inspect decides what to do with a datagram b from addr at now. Replies
// are appended to dst, which may be nil. No reply is larger than b.
func (g *Gate) Inspect(addr netip.AddrPort, b []byte, now time.Time, dst []byte) Decision {
	hs, err := wire.ParseHandshake(b)
	if err != nil {
		return Decision{Why: err.Error()}
	}
	if hs.Header.DestSocket != 0 {
		return Decision{Why: "handshake addressed to a socket, not to a listener"}
	}
	switch hs.Type {
	case wire.HSInduction:
		if hs.Version != 4 && hs.Version != 5 {
			return Decision{Why: "induction of unknown handshake version"}
		}
		c := g.Jar.Issue(addr, now)
		return Decision{Verdict: Reply, Reply: wire.AppendInductionResponse(dst, &hs, c, Timestamp(now)), Why: "induction"}
	case wire.HSConclusion:
		if !g.Jar.Valid(addr, hs.Cookie, now) {
			// libsrt drops these silently too: answering a forged source
			// would make us a reflector.
			return Decision{Why: "conclusion without a valid cookie"}
		}
		switch hs.Version {
		case 4:
			return Decision{Verdict: Conclude, Handshake: hs, Why: "HSv4 conclusion"}
		case 5:
			info, err := wire.ParseConclusion(&hs)
			if err == nil {
				err = wire.CheckCallerConclusion(&hs)
			}
			if err != nil {
				return Decision{Verdict: Reply, Reply: RejectionFor(dst, &hs, wire.RejXBadRequest, now), Why: conclusionError(err)}
			}
			return Decision{Verdict: Conclude, Handshake: hs, Conclusion: info, Why: "conclusion"}
		}
		return Decision{Verdict: Reply, Reply: RejectionFor(dst, &hs, wire.RejVersion, now), Why: "conclusion of unknown handshake version"}
	case wire.HSWaveahand:
		return Decision{Verdict: Reply, Reply: RejectionFor(dst, &hs, wire.RejXUnimplemented, now), Why: "rendezvous is not supported"}
	}
	return Decision{Why: "unexpected handshake type " + hs.Type.String()}
}

func conclusionError(err error) string {
	if errors.Is(err, wire.ErrStreamIDTooLong) {
		return "stream ID longer than 512 bytes"
	}
	return "malformed conclusion: " + err.Error()
}

// RejectionFor appends the rejection of the caller request req: a rejection
// handshake for HSv5 callers and, since HSv4 callers cannot read those, a
// SHUTDOWN for them, as libsrt does. Every caller's induction says version
// 4, so only the later handshakes tell an HSv4 caller apart.
func RejectionFor(dst []byte, req *wire.Handshake, reason wire.RejectReason, now time.Time) []byte {
	if req.Version < 5 && req.Type != wire.HSInduction {
		return wire.AppendShutdown(dst, req.SocketID, Timestamp(now))
	}
	return wire.AppendRejection(dst, req, reason, Timestamp(now))
}

var epoch = time.Now()

// Timestamp is the header timestamp of a packet the relay originates:
// microseconds since the process started, wrapping like SRT's.
func Timestamp(now time.Time) uint32 { return uint32(now.Sub(epoch).Microseconds()) }
