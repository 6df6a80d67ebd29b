// Package session relays established SRT sessions. A Session owns one
// connected UDP socket towards its upstream and a Link towards its caller,
// and copies datagrams between them until SHUTDOWN from either side, the
// idle timeout, a socket error or an operator ends it. Sessions live in a
// process-wide Registry rather than in any one configuration, so a config
// reload does not touch them.
package session

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Link is the caller side of a session: a UDP socket connected to the
// caller (the fast path) or the caddy-l4 connection the caller came in on.
type Link interface {
	// Read reads one whole datagram.
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	// Close unblocks a pending Read and releases what the link owns.
	Close() error
}

// EndReason says why a session ended.
type EndReason string

// Reasons a session ends.
const (
	EndCallerShutdown   EndReason = "caller_shutdown"
	EndUpstreamShutdown EndReason = "upstream_shutdown"
	EndIdle             EndReason = "idle_timeout"
	EndKicked           EndReason = "kicked"
	EndCallerError      EndReason = "caller_error"
	EndUpstreamError    EndReason = "upstream_error"
	EndCallerRestarted  EndReason = "caller_restarted"
	EndStopped          EndReason = "stopped"
)

// relayBuf is the read buffer of each relay loop. SRT packets never
// exceed the MTU (1500 bytes); a longer datagram arrives truncated and was
// garbage anyway. Small buffers keep an idle session small.
const relayBuf = 2048

// TakeoverSilence is how long a caller must have been silent before a new
// handshake from its address (a restarted encoder with a fixed source
// port) may replace its session. A live SRT peer is never silent for more
// than about a second: it sends a keepalive at least that often.
const TakeoverSilence = 3 * time.Second

// Config describes an established session.
type Config struct {
	Caller       netip.AddrPort
	CallerSocket uint32
	// Upstream is the socket connected to the upstream; the session owns it.
	Upstream       *net.UDPConn
	UpstreamAddr   string
	UpstreamSocket uint32
	// SubstituteSocket is non-zero when the upstream knows the caller by a
	// socket ID other than its own (a retried handshake); datagrams from
	// the upstream are then readdressed to CallerSocket.
	SubstituteSocket uint32
	// Response is the upstream's conclusion response as sent to the
	// caller, replayed when the caller repeats its conclusion.
	Response []byte
	// IdleTimeout ends the session after this long without a datagram
	// in either direction.
	IdleTimeout time.Duration
	// BatchWindow is how long a datagram may wait so that the relay
	// moves many with one wake-up, while the relay is busy; 0 relays
	// each as it comes. Sessions share a relay, which takes the smallest
	// window among its sessions.
	BatchWindow time.Duration
	// Gate answers a caller that repeats its induction.
	Gate *handshake.Gate
	// Logger gets the debug lines of the data path.
	Logger *zap.Logger
	// OnEnd runs once, after both relay loops have stopped.
	OnEnd func(*Session)
	// Info is opaque data for the owner (stream ID, route, ...).
	Info any
}

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

// Stats is a snapshot of a session's traffic.
type Stats struct {
	FromCaller, FromUpstream           uint64 // packets
	FromCallerBytes, FromUpstreamBytes uint64
	// LastCaller and LastUpstream are the times traffic was last seen each
	// way, to the precision of the idle check.
	LastCaller, LastUpstream time.Time
	// UpstreamACK and CallerACK are the last full ACK each side sent: its
	// view of the link as the receiver of the other side's data. The
	// booleans say whether one was seen.
	UpstreamACK, CallerACK         wire.ACK
	HaveUpstreamACK, HaveCallerACK bool
}

// Session is one relayed SRT connection.
type Session struct {
	Config
	// ID is unique in the process.
	ID      string
	Started time.Time

	link     atomic.Pointer[linkRef]
	fastPath bool
	// up is what the session writes to the upstream through: Upstream,
	// or the reactor's copy of it.
	up     Link
	pair   *relayPair // non-nil when a reactor relays the session
	heldMu sync.Mutex
	held   [][]byte

	fromCaller, fromUpstream counter
	callerACK, upstreamACK   linkStats
	lastCaller, lastUpstream atomic.Int64 // unix nanoseconds, set by the idle check

	registry *Registry
	done     chan struct{}
	endOnce  sync.Once
	reason   EndReason
	endErr   error
	watchdog atomic.Pointer[time.Timer]
	finished chan struct{}

	// loopsMu guards the count of running relay loops together with the
	// ended flag, so that a loop can never start after End: ServeLink may
	// race with End on the listener path. The last loop to leave an ended
	// session finishes it.
	loopsMu   sync.Mutex
	nloops    int
	endedFlag bool
}

type linkRef struct{ Link }

var nextID atomic.Uint64

// New prepares a session; Start runs it.
func New(cfg Config) *Session {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	now := time.Now()
	s := &Session{
		Config:   cfg,
		ID:       strconv.FormatUint(nextID.Add(1), 10),
		Started:  now,
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	if cfg.Upstream != nil {
		s.up = cfg.Upstream
	}
	s.lastCaller.Store(now.UnixNano())
	s.lastUpstream.Store(now.UnixNano())
	return s
}

// Start registers the session, sends the caller its Response, and starts
// relaying. With fastPath, link
// is the session's own socket connected to the caller, and a reactor
// relays both sockets (see reactor_linux.go), or failing that a goroutine
// per direction; the session then owns link and Upstream. Otherwise the
// caller must run ServeLink(link) until it returns.
func (s *Session) Start(reg *Registry, link Link, fastPath bool) error {
	s.registry = reg
	s.fastPath = fastPath
	var p *relayPair
	if fastPath {
		p = newRelayPair(s, link)
	}
	// Nobody else sees the session before reg.add.
	switch {
	case p != nil:
		s.pair, s.up = p, p.upstream
		s.link.Store(&linkRef{p.caller})
		s.nloops = 1 // the reactor
	case fastPath:
		s.link.Store(&linkRef{link})
		s.nloops = 2
	default:
		s.link.Store(&linkRef{link})
		s.nloops = 1
	}
	if err := reg.add(s); err != nil {
		if p != nil {
			p.discard()
		}
		return err
	}
	// The caller's first datagram from the session is the answer to its
	// conclusion: nothing the upstream sends may overtake it (a caller
	// that is still waiting for it takes only a handshake).
	if s.Response != nil {
		if _, err := s.currentLink().Write(s.Response); err != nil {
			s.Logger.Debug("sending conclusion response to caller", zap.String("session", s.ID), zap.Error(err))
		}
	}
	s.armWatchdog()
	switch {
	case p != nil:
		// The reactor has descriptors of its own; these would keep Go's
		// netpoller watching the sockets.
		_ = link.Close()
		_ = s.Upstream.Close()
		p.handOver()
	case fastPath:
		go s.upstreamLoop()
		go func() {
			defer s.leaveLoop()
			s.callerLoop(link)
		}()
	default:
		go s.upstreamLoop()
	}
	return nil
}

// FastPath reports whether the caller link is a socket of the session's own.
func (s *Session) FastPath() bool { return s.fastPath }

// ServeLink relays from the caller link l until the session ends or
// another link replaces l (see Attach). A datagram it read after the
// session ended it returns: a new caller on the same address may have
// sent it, and it is the listener's to serve.
func (s *Session) ServeLink(l Link) (leftover []byte) {
	if !s.enterLoop() {
		return nil
	}
	defer s.leaveLoop()
	return s.callerLoop(l)
}

// enterLoop registers a relay loop, unless the session has ended.
func (s *Session) enterLoop() bool {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	if s.endedFlag {
		return false
	}
	s.nloops++
	return true
}

func (s *Session) leaveLoop() {
	s.loopsMu.Lock()
	s.nloops--
	last := s.endedFlag && s.nloops == 0
	s.loopsMu.Unlock()
	if last {
		s.finish()
	}
}

// finish runs once the session has ended and its last loop has left (in
// that loop's goroutine, so an idle session costs no goroutine for it).
// Only now are the counters final: the registry folds them into its
// totals as it lets the session go, so totals never go back.
func (s *Session) finish() {
	if s.registry != nil {
		s.registry.remove(s)
	}
	if s.OnEnd != nil {
		s.OnEnd(s)
	}
	close(s.finished)
}

// Attach makes l the caller link, closing the one it replaces. A session
// relaying through a caddy-l4 connection uses it when a config reload
// handed the caller to a new connection; the caller then runs ServeLink(l).
func (s *Session) Attach(l Link) {
	s.heldMu.Lock()
	old := s.link.Swap(&linkRef{l})
	for _, p := range s.held {
		_, _ = l.Write(p)
	}
	s.held = nil
	s.heldMu.Unlock()
	if old != nil && old.Link != l {
		_ = old.Close()
	}
	select {
	case <-s.done: // ended meanwhile: do not leave l open
		_ = l.Close()
	default:
	}
}

func (s *Session) currentLink() Link { return s.link.Load().Link }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Wait blocks until the relay loops have stopped and OnEnd has run.
func (s *Session) Wait() { <-s.finished }

// Kick ends the session on an operator's request: both peers get a SHUTDOWN.
func (s *Session) Kick() { s.End(EndKicked, nil) }

// Reason says why the session ended, and the error behind it if any.
func (s *Session) Reason() (EndReason, error) {
	select {
	case <-s.done:
		return s.reason, s.endErr
	default:
		return "", nil
	}
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	up, haveUp := s.upstreamACK.load()
	ca, haveCa := s.callerACK.load()
	return Stats{
		UpstreamACK:       up,
		HaveUpstreamACK:   haveUp,
		CallerACK:         ca,
		HaveCallerACK:     haveCa,
		FromCaller:        s.fromCaller.packets.Load(),
		FromUpstream:      s.fromUpstream.packets.Load(),
		FromCallerBytes:   s.fromCaller.bytes.Load(),
		FromUpstreamBytes: s.fromUpstream.bytes.Load(),
		LastCaller:        time.Unix(0, s.lastCaller.Load()),
		LastUpstream:      time.Unix(0, s.lastUpstream.Load()),
	}
}

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
				// An ICMP error from an earlier write: the upstream may be
				// restarting. SRT's own timers decide whether it is dead.
				continue
			}
			s.End(EndUpstreamError, fmt.Errorf("reading from upstream %s: %w", s.UpstreamAddr, err))
			return
		}
		p := buf[:n]
		shutdown := s.takeFromUpstream(p)
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
	if _, err := s.up.Write(p); err != nil && !s.ended() && !isRefused(err) {
		s.Logger.Debug("writing to upstream", zap.String("session", s.ID), zap.Error(err))
	}
	if shutdown {
		s.End(EndCallerShutdown, nil)
	}
	return true
}

// takeFromCaller does what both relays do with a datagram from the
// caller before passing it on: a handshake to no socket is answered here
// and not relayed (see callerHandshake); anything else is counted and
// observed. shutdown reports a SHUTDOWN, which ends the session once it
// has been passed on.
func (s *Session) takeFromCaller(p []byte) (relay, shutdown bool) {
	if wire.DestSocketOf(p) == 0 && wire.IsControl(p) && wire.ControlTypeOf(p) == wire.CtrlHandshake {
		s.callerHandshake(p)
		return false, false
	}
	s.fromCaller.add(len(p))
	return true, observe(p, &s.callerACK)
}

// takeFromUpstream does what both relays do with a datagram from the
// upstream before passing it on: readdress it if the upstream knows the
// caller by a substitute socket ID, count and observe it.
func (s *Session) takeFromUpstream(p []byte) (shutdown bool) {
	if s.SubstituteSocket != 0 {
		wire.SetDestSocket(p, s.CallerSocket)
	}
	s.fromUpstream.add(len(p))
	return observe(p, &s.upstreamACK)
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

func (s *Session) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// idleCheck is how often the watchdog looks at the counters.
func (s *Session) idleCheck() time.Duration {
	d := s.IdleTimeout / 4
	if d > time.Second {
		d = time.Second
	}
	if d < 10*time.Millisecond {
		d = 10 * time.Millisecond
	}
	return d
}

func (s *Session) armWatchdog() {
	var seenCaller, seenUpstream uint64
	var check func()
	check = func() {
		now := time.Now()
		if c := s.fromCaller.packets.Load(); c != seenCaller {
			seenCaller = c
			s.lastCaller.Store(now.UnixNano())
		}
		if u := s.fromUpstream.packets.Load(); u != seenUpstream {
			seenUpstream = u
			s.lastUpstream.Store(now.UnixNano())
		}
		last := max(s.lastCaller.Load(), s.lastUpstream.Load())
		if s.IdleTimeout > 0 && now.Sub(time.Unix(0, last)) >= s.IdleTimeout {
			s.End(EndIdle, nil)
			return
		}
		if !s.ended() {
			s.watchdog.Store(time.AfterFunc(s.idleCheck(), check))
		}
	}
	s.watchdog.Store(time.AfterFunc(s.idleCheck(), check))
}

// End ends the session: SHUTDOWN to whichever side did not end it, sockets
// closed, registry entry removed. Only the first call counts.
func (s *Session) End(reason EndReason, err error) {
	s.endOnce.Do(func() {
		s.reason, s.endErr = reason, err
		close(s.done)
		s.loopsMu.Lock()
		s.endedFlag = true
		last := s.nloops == 0
		s.loopsMu.Unlock()
		if last {
			defer s.finish()
		}
		if w := s.watchdog.Load(); w != nil {
			w.Stop()
		}
		now := time.Now()
		ts := handshake.Timestamp(now)
		switch reason {
		case EndCallerShutdown, EndUpstreamShutdown:
			// The SHUTDOWN was relayed; both peers know.
		default:
			if reason != EndUpstreamError {
				_, _ = s.up.Write(wire.AppendShutdown(nil, s.UpstreamSocket, ts))
			}
			if reason != EndCallerError && reason != EndCallerRestarted {
				_, _ = s.currentLink().Write(wire.AppendShutdown(nil, s.CallerSocket, ts))
			}
		}
		if s.pair != nil {
			s.pair.release()
			return
		}
		_ = s.Upstream.Close()
		_ = s.currentLink().Close()
	})
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
