// Package handshake holds the two halves of the handshake splice as pure
// state machines, driven by datagrams and a clock the caller supplies:
// Gate answers callers (inductions with cookies, conclusions checked
// against them) and Dialer replays a caller's conclusion to an upstream
// listener. Neither does I/O, so both are tested and fuzzed with fake clocks.
package handshake

import (
	"errors"
	"net/netip"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// RetryInterval is how often an unanswered handshake packet is resent,
// the same pace as a libsrt caller.
const RetryInterval = 250 * time.Millisecond

// Outcome is what a datagram from the upstream did to a Dialer.
type Outcome int

// Outcomes of Dialer.Receive.
const (
	// Ignored: not for this handshake, or a stale duplicate.
	Ignored Outcome = iota
	// Send: the induction was answered; send Dialer.Packet (the conclusion).
	Send
	// Accepted: the upstream accepted; Dialer.Response holds its answer.
	Accepted
	// Rejected: the upstream rejected; Dialer.Response holds its rejection.
	Rejected
)

// ErrBadConclusion reports a caller conclusion the Dialer cannot replay.
var ErrBadConclusion = errors.New("handshake: caller conclusion is not a handshake")

// Dialer replays one caller's handshake to one upstream address: it sends
// its own induction, then the caller's conclusion with the upstream's
// cookie, resending whichever is unanswered every RetryInterval.
type Dialer struct {
	conclusion []byte    // caller's conclusion, rewritten per send
	received   time.Time // when the caller's conclusion arrived
	callerTS   uint32    // its timestamp, advanced by our delay on replay
	callerID   uint32    // the caller's socket ID
	socketID   uint32    // the socket ID the upstream sees
	upstreamIP netip.Addr
	callerIP   netip.Addr

	phase        phase
	cookie       uint32
	packet       []byte // the packet to send now
	lastSend     time.Time
	concSends    int
	response     []byte
	rejectReason wire.RejectReason
}

type phase int

const (
	phaseInduction phase = iota
	phaseConclusion
	phaseDone
)

// DialerConfig describes one replay.
type DialerConfig struct {
	// Conclusion is the caller's conclusion datagram as received.
	Conclusion []byte
	// Received is when it arrived.
	Received time.Time
	// SocketID is the socket ID presented to the upstream: the caller's own,
	// or a substitute when a retry must look like a new connection.
	SocketID uint32
	// UpstreamIP and CallerIP fill the peer IP fields the way a direct
	// peer would see them.
	UpstreamIP netip.Addr
	CallerIP   netip.Addr
}

// NewDialer prepares a replay. It fails if the conclusion is not a handshake.
func NewDialer(c DialerConfig) (*Dialer, error) {
	hs, err := wire.ParseHandshake(c.Conclusion)
	if err != nil {
		return nil, ErrBadConclusion
	}
	d := &Dialer{
		conclusion: append([]byte(nil), c.Conclusion...),
		received:   c.Received,
		callerTS:   hs.Header.Timestamp,
		callerID:   hs.SocketID,
		socketID:   c.SocketID,
		upstreamIP: c.UpstreamIP,
		callerIP:   c.CallerIP,
	}
	// Our induction carries the caller's parameters, so the upstream's
	// answer is the one the caller would have got.
	d.packet = wire.AppendInduction(nil, d.socketID, hs.ISN, hs.MTU, hs.FlowWindow,
		wire.EncodePeerIP(c.UpstreamIP), 0)
	return d, nil
}

// Start returns the first packet to send and records the send time.
func (d *Dialer) Start(now time.Time) []byte {
	d.lastSend = now
	return d.packet
}

// Packet is the packet currently being sent (induction, then conclusion).
func (d *Dialer) Packet() []byte { return d.packet }

// Response is the upstream's conclusion response or rejection, rewritten
// for the caller: addressed to the caller's socket and carrying the
// caller's address in the peer IP field.
func (d *Dialer) Response() []byte { return d.response }

// RejectReason is the upstream's rejection reason after Rejected.
func (d *Dialer) RejectReason() wire.RejectReason { return d.rejectReason }

// Cookie is the upstream's cookie once its induction response arrived.
func (d *Dialer) Cookie() uint32 { return d.cookie }

// ConclusionSends counts how often the conclusion was sent.
func (d *Dialer) ConclusionSends() int { return d.concSends }

// InConclusion reports whether the induction was answered.
func (d *Dialer) InConclusion() bool { return d.phase == phaseConclusion }

// NextRetry is when the current packet is due again.
func (d *Dialer) NextRetry() time.Time { return d.lastSend.Add(RetryInterval) }

// Retry returns the packet to resend if one is due at now, else nil.
func (d *Dialer) Retry(now time.Time) []byte {
	if d.phase == phaseDone || now.Before(d.NextRetry()) {
		return nil
	}
	d.lastSend = now
	if d.phase == phaseConclusion {
		d.stampConclusion(now)
		d.concSends++
	}
	return d.packet
}

// stampConclusion advances the caller's timestamp by the time the
// conclusion spent with us, so the upstream's clock base (gosrt and libsrt
// derive TSBPD from it) is what it would be on a direct connection.
func (d *Dialer) stampConclusion(now time.Time) {
	delay := now.Sub(d.received)
	if delay < 0 {
		delay = 0
	}
	ts := d.callerTS + uint32(delay.Microseconds())
	h, _ := wire.ParseHeader(d.packet)
	h.Timestamp = ts
	h.Append(d.packet[:0])
}

// Receive feeds a datagram from the upstream.
func (d *Dialer) Receive(now time.Time, b []byte) Outcome {
	if d.phase == phaseDone {
		return Ignored
	}
	if d.phase == phaseConclusion && wire.IsShutdown(b) {
		// libsrt refuses an HSv4 caller with a SHUTDOWN, addressed to
		// socket 0 rather than to the caller: a refusal all the same.
		if dest := wire.DestSocketOf(b); dest == d.socketID || dest == 0 {
			d.phase = phaseDone
			d.rejectReason = wire.RejPeer
			caller, _ := wire.ParseHandshake(d.conclusion)
			caller.SocketID = d.callerID
			d.response = RejectionFor(nil, &caller, wire.RejPeer, now)
			return Rejected
		}
		return Ignored
	}
	hs, err := wire.ParseHandshake(b)
	if err != nil || hs.Header.DestSocket != d.socketID {
		return Ignored
	}
	switch {
	case hs.Type == wire.HSInduction && d.phase == phaseInduction:
		if hs.Cookie == 0 {
			return Ignored
		}
		d.cookie = hs.Cookie
		d.phase = phaseConclusion
		d.packet = d.conclusion
		wire.SetCookie(d.packet, d.cookie)
		wire.SetSocketID(d.packet, d.socketID)
		wire.SetPeerIP(d.packet, d.upstreamIP)
		d.stampConclusion(now)
		d.lastSend = now
		d.concSends = 1
		return Send
	case hs.Type == wire.HSConclusion && d.phase == phaseConclusion:
		d.finish(b)
		return Accepted
	case hs.Type.IsRejection():
		d.finish(b)
		d.rejectReason = hs.Type.Reason()
		return Rejected
	}
	return Ignored
}

func (d *Dialer) finish(b []byte) {
	d.phase = phaseDone
	d.response = append([]byte(nil), b...)
	wire.SetDestSocket(d.response, d.callerID)
	wire.SetPeerIP(d.response, d.callerIP)
}
