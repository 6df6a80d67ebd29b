// Package session relays established SRT sessions. A Session owns one
// connected UDP socket towards its upstream and a Link towards its caller,
// and copies datagrams between them until SHUTDOWN from either side, the
// idle timeout, a socket error or an operator ends it. Sessions live in a
// process-wide Registry rather than in any one configuration, so a config
// reload does not touch them.
package session

import (
	"errors"
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
	// EndUpstreamGone: the upstream's host refused our datagrams
	// repeatedly (see origin.go).
	EndUpstreamGone    EndReason = "upstream_gone"
	EndCallerRestarted EndReason = "caller_restarted"
	EndStopped         EndReason = "stopped"
)

// TakeoverSilence is how long a caller must have been silent before a new
// handshake from its address (a restarted encoder with a fixed source
// port) may replace its session. A live SRT peer is never silent for more
// than about a second: it sends a keepalive at least that often.
const TakeoverSilence = 3 * time.Second

// Config describes an established session.
type Config struct {
	// Listener is the local address the caller dialled (the listener's);
	// with Caller, it keys the session in the registry.
	Listener     netip.AddrPort
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

// Stats is a snapshot of a session's traffic.
type Stats struct {
	FromCaller, FromUpstream           uint64 // packets
	FromCallerBytes, FromUpstreamBytes uint64
	// KernelFromCaller and KernelFromUpstream are the packets of those
	// the ebpf data path forwarded in the kernel: the rest the relay did.
	KernelFromCaller, KernelFromUpstream uint64
	// LastCaller and LastUpstream are the times traffic was last seen each
	// way, to the precision of the idle check.
	LastCaller, LastUpstream time.Time
	// UpstreamACK and CallerACK are the last full ACK each side sent: its
	// view of the link as the receiver of the other side's data. The
	// booleans say whether one was seen.
	UpstreamACK, CallerACK         wire.ACK
	HaveUpstreamACK, HaveCallerACK bool
	// Dropped counts control packets either way that the guard refused
	// (guard.go): forged or malformed.
	Dropped uint64
}

// Session is one relayed SRT connection.
type Session struct {
	Config
	// ID is unique in the process.
	ID      string
	Started time.Time

	link atomic.Pointer[linkRef]
	path Path
	// up is what the session writes to the upstream through: Upstream,
	// or the reactor's copy of it.
	up     Link
	pair   *relayPair // non-nil when a reactor relays the session
	heldMu sync.Mutex
	held   [][]byte

	fromCaller, fromUpstream counter
	dropped                  atomic.Uint64 // control packets the guard refused
	offload                  offload
	callerACK, upstreamACK   linkStats
	lastCaller, lastUpstream atomic.Int64 // unix nanoseconds, set by the idle check
	refusedSince             atomic.Int64 // unix nanoseconds of an unconfirmed refusal (origin.go)

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
// relaying. With want PathSocket, link is the session's own socket
// connected to the caller: the reactor relays both sockets (see
// reactor_linux.go), or failing that a goroutine per direction; the
// session then owns link and Upstream. With PathListener, the caller must
// run ServeLink(link) until it returns. Path says what Start chose.
func (s *Session) Start(reg *Registry, link Link, want Path) error {
	s.registry = reg
	s.path = want
	var p *relayPair
	if want != PathListener {
		if c, ok := link.(*net.UDPConn); ok {
			sizeRecvBuffer(c)
		}
		if s.Upstream != nil {
			sizeRecvBuffer(s.Upstream)
		}
		s.path = PathSocket
		if p = newRelayPair(s, link); p != nil {
			s.path = PathReactor
		}
	}
	// Nobody else sees the session before reg.add.
	switch s.path {
	case PathReactor:
		s.pair, s.up = p, p.upstream
		s.link.Store(&linkRef{p.caller})
		s.nloops = 1 // the reactor
	case PathSocket:
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
	if want == PathEBPF {
		// Only now: nothing from the upstream may overtake the response.
		s.startOffload(link)
	}
	s.armWatchdog()
	switch s.path {
	case PathReactor:
		// The reactor has descriptors of its own; these would keep Go's
		// netpoller watching the sockets.
		_ = link.Close()
		_ = s.Upstream.Close()
		p.handOver()
	case PathSocket:
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

// Key is the session's registry key.
func (s *Session) Key() Key { return Key{Listener: s.Listener, Caller: s.Caller} }

// Path says how the session relays, as Start decided it.
func (s *Session) Path() Path {
	if s.offloaded() {
		return PathEBPF
	}
	return s.path
}

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
	// Under the offload's lock, the kernel's counts are either still in
	// the map or already folded into the relay's, never in neither.
	s.offload.mu.Lock()
	defer s.offload.mu.Unlock()
	st := Stats{
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
		Dropped:           s.dropped.Load(),
	}
	s.offload.addTo(&st)
	return st
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
		fromCaller, fromUpstream := s.packets()
		if c := fromCaller; c != seenCaller {
			seenCaller = c
			s.lastCaller.Store(now.UnixNano())
		}
		if u := fromUpstream; u != seenUpstream {
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
		// From here on the sockets take all the session's datagrams.
		s.endOffload()
		now := time.Now()
		ts := handshake.Timestamp(now)
		switch reason {
		case EndCallerShutdown, EndUpstreamShutdown:
			// The SHUTDOWN was relayed; both peers know.
		default:
			if reason != EndUpstreamError && reason != EndUpstreamGone {
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
