package session

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The reactor relays fast-path sessions. The sockets of many sessions sit
// in one epoll set; one goroutine, parked in Go's netpoller until the set
// has something ready, reads whichever sockets are ready with recvmmsg
// and writes each batch on with sendmmsg. Against a goroutine per session
// and direction, a session costs no goroutine, stack or buffer of its
// own, and one wake-up serves every socket that became ready meanwhile
// instead of one goroutine switch per packet: waking up, not copying, is
// most of what a relay spends.
//
// The reactor's descriptors are duplicates of the net.UDPConns the
// session was set up with, which are then closed: otherwise Go's
// netpoller would still watch the sockets and wake for every packet too.
//
// Paced senders rarely leave datagrams for a wake-up to share: each finds
// the reactor asleep. Batching trades a bounded wait for wake-ups. When
// datagrams wake the reactor batchFactor times a batch window or more,
// on average over several windows, it stops listening to the set and
// looks at it once a window instead (a timerfd), relaying what came
// meanwhile, for as long as each look replaces batchFactor wake-ups on
// average (see batcher). A datagram waits at most one window, and only
// while the reactor is busy.
//
// What the netpoller watches is therefore not the set but a gate: a
// second epoll set holding the first and the timerfd. Silencing the set
// in the gate (one epoll_ctl) is what keeps datagrams that arrive
// between ticks from waking the netpoller's thread for nothing.
//
// A goroutine of its own blocked in epoll_wait would skip the netpoller,
// but measured worse (BenchmarkRelayPaced): a P held in a blocking system
// call keeps the scheduler from idling between packets. For the same
// reason every call the loop makes per wake-up is a raw one: none blocks.

// reactorsFor is how many reactors a process runs for a given GOMAXPROCS:
// one per four processors. Fewer reactors mean fewer wake-ups and bigger
// batches; one thread relays far more than a small machine can carry.
func reactorsFor(procs int) int { return max(1, (procs+3)/4) }

// useReactor turns the reactor off: for tests and benchmarks that compare
// it with a goroutine per direction, and for operators, as a way back if
// it ever misbehaves (CADDY_L4_SRT_RELAY=goroutines in Caddy's
// environment).
var useReactor = os.Getenv("CADDY_L4_SRT_RELAY") != "goroutines"

var (
	reactorsOnce sync.Once
	reactors     []*reactor
)

// allReactors returns the process's reactors, making them the first time.
func allReactors() []*reactor {
	reactorsOnce.Do(func() {
		reactors = make([]*reactor, reactorsFor(runtime.GOMAXPROCS(0)))
		for i := range reactors {
			reactors[i] = &reactor{}
		}
	})
	return reactors
}

// RelayWakeups counts the times the reactors woke up to relay since the
// process started: for datagrams, and for the batch timer (see
// batch_window). Datagrams relayed per wake-up is what batching buys.
func RelayWakeups() (datagrams, timer uint64) {
	for _, r := range allReactors() {
		datagrams += r.wakes.Load()
		timer += r.ticks.Load()
	}
	return datagrams, timer
}

// pickReactor assigns a session to the least loaded reactor.
func pickReactor() *reactor {
	var best *reactor
	bestLoad := int(^uint(0) >> 1)
	for _, r := range allReactors() {
		r.mu.Lock()
		if r.load < bestLoad {
			best, bestLoad = r, r.load
		}
		r.mu.Unlock()
	}
	best.mu.Lock()
	best.load++
	best.mu.Unlock()
	return best
}

const (
	// batchSize is how many datagrams one recvmmsg or sendmmsg moves.
	batchSize = 32
	// pumpRounds bounds the batches taken from one socket per look at the
	// set, so that one flooding sender cannot starve the others; the loop
	// looks again before it waits, and the level-triggered set reports
	// the socket again.
	pumpRounds = 4
	// wakeKey marks the reactor's eventfd in the epoll set.
	wakeKey = 0
	// eventsPerLook is how many ready sockets one epoll_pwait returns.
	eventsPerLook = 128
)

// rawSock is a UDP socket, connected to its peer, owned by a reactor.
// Other goroutines may write to it (SHUTDOWNs, handshake answers); only
// the reactor closes it, under mu, so that they never write to a
// descriptor number the kernel has since given to another file.
type rawSock struct {
	mu sync.RWMutex
	fd int // -1 once closed

	// gsoErr is why the route refused a segmented batch: from then on
	// the reactor sends datagram by datagram. Owned by the reactor.
	gsoErr error
}

var errReactorOwned = errors.New("session: socket is read by the reactor")

// Read is not for use: the reactor reads the socket.
func (r *rawSock) Read([]byte) (int, error) { return 0, errReactorOwned }

// Write sends one datagram.
func (r *rawSock) Write(p []byte) (int, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.fd < 0 {
		return 0, net.ErrClosed
	}
	for tries := 0; ; tries++ {
		n, err := unix.Write(r.fd, p)
		switch {
		case err == nil:
			return n, nil
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN && tries < 3:
			waitWritable(r.fd)
			continue
		}
		return 0, err
	}
}

// Close does nothing: the reactor closes the socket when the session ends.
func (r *rawSock) Close() error { return nil }

func (r *rawSock) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd >= 0 {
		_ = unix.Close(r.fd)
		r.fd = -1
	}
}

// waitWritable waits a little for room in a socket's send buffer. A UDP
// send buffer fills only under extreme load; the wait bounds how long a
// reactor stalls for it.
func waitWritable(fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	_, _ = unix.Poll(fds, 5)
}

// relayPair is a session as the reactor sees it.
type relayPair struct {
	s                *Session
	r                *reactor
	caller, upstream *rawSock
	key              uint32 // in the epoll set; 0 until registered
	state            pairState
}

// pairState is where a pair is in its reactor's hands; r.mu guards it.
type pairState uint8

const (
	pairAssigned pairState = iota // picked a reactor, not yet handed over
	pairAdded                     // handed over: the reactor relays and closes it
	pairRemoving                  // its session ended
)

// newRelayPair duplicates the descriptors of the session's caller socket
// and upstream socket for the least loaded reactor, or returns nil when the reactor
// cannot take this session (it then relays with goroutines).
func newRelayPair(s *Session, link Link) *relayPair {
	c, ok := link.(*net.UDPConn)
	if !ok || !useReactor || s.Upstream == nil {
		return nil
	}
	cfd, err := dupFD(c)
	if err != nil {
		return nil
	}
	ufd, err := dupFD(s.Upstream)
	if err != nil {
		_ = unix.Close(cfd)
		return nil
	}
	return &relayPair{s: s, r: pickReactor(), caller: &rawSock{fd: cfd}, upstream: &rawSock{fd: ufd}}
}

// handOver gives the pair to its reactor, which relays from now on.
func (p *relayPair) handOver() { p.r.add(p) }

// release has the reactor close the pair's sockets; the session finishes
// once it has.
func (p *relayPair) release() { p.r.remove(p) }

func dupFD(c *net.UDPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	return nfd, derr
}

// discard closes the descriptors of a pair never handed to its reactor.
func (p *relayPair) discard() {
	p.r.mu.Lock()
	p.r.load--
	p.r.mu.Unlock()
	p.closeSockets()
}

func (p *relayPair) closeSockets() {
	p.caller.close()
	p.upstream.close()
}

// reactor is one relay goroutine and its epoll sets. It runs only while
// it has sessions: the goroutine exits, and its descriptors are closed,
// when the last one ends.
type reactor struct {
	mu      sync.Mutex
	running bool
	epfd    int // the sockets and the eventfd
	gatefd  int // holds epfd and tickfd: in Go's netpoller
	tickfd  int // a timerfd
	wakefd  int
	adds    []*relayPair
	removes []*relayPair
	load    int // sessions assigned and not yet removed
	pending atomic.Bool

	wakes, ticks atomic.Uint64 // wake-ups for datagrams, for the batch timer

	// Owned by the loop goroutine.
	window    time.Duration         // the smallest batch window of its sessions
	flooded   bool                  // a socket's last of pumpRounds reads filled a batch
	undrained bool                  // a socket may hold more than this look took
	moved     int                   // datagrams read this wake-up
	windows   map[time.Duration]int // sessions by batch window
	pairs     pairTable
	in        *recvBatch
	out       *sendBatch
	events    []unix.EpollEvent
}

// add hands a pair to the reactor, starting it if it is not running.
func (r *reactor) add(p *relayPair) {
	r.mu.Lock()
	var err error
	if p.state == pairAssigned && !r.running {
		err = r.start()
	}
	if p.state == pairRemoving || err != nil {
		// Ended before it was relayed, or no epoll set to relay it in.
		p.state = pairRemoving
		r.load--
		r.mu.Unlock()
		if err != nil {
			p.s.End(EndStopped, fmt.Errorf("starting the relay: %w", err))
		}
		p.closeSockets()
		p.s.leaveLoop()
		return
	}
	p.state = pairAdded
	r.adds = append(r.adds, p)
	r.wake()
	r.mu.Unlock()
}

// remove asks the reactor to close a pair's sockets and let its session
// finish. Before add, it leaves that to add.
func (r *reactor) remove(p *relayPair) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := p.state
	p.state = pairRemoving
	if old == pairAdded {
		r.removes = append(r.removes, p)
		r.wake()
	}
}

// wake makes the loop apply adds and removes. Called with mu held.
func (r *reactor) wake() {
	r.pending.Store(true)
	var one [8]byte
	one[0] = 1 // eventfd counters are host-endian; any non-zero value wakes
	_, _ = unix.Write(r.wakefd, one[:])
}

// start creates the epoll sets, timerfd and eventfd, and starts the loop.
// Called with mu held.
func (r *reactor) start() (err error) {
	var undo []func() // closes what was made, if start fails
	defer func() {
		if err != nil {
			for _, f := range undo {
				f()
			}
		}
	}()
	made := func(fd int, err error) (int, error) {
		if err == nil {
			undo = append(undo, func() { unix.Close(fd) })
		}
		return fd, err
	}
	epfd, err := made(unix.EpollCreate1(unix.EPOLL_CLOEXEC))
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	tickfd, err := made(unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC))
	if err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	wakefd, err := made(unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC))
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	gatefd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	// The loop waits in Go's netpoller for the gate to become readable,
	// like any goroutine waiting for a socket: NewFile puts a non-blocking
	// descriptor there. From then on the file owns the descriptor, and
	// closing it any other way would race the file's finalizer.
	if err = unix.SetNonblock(gatefd, true); err != nil {
		unix.Close(gatefd)
		return fmt.Errorf("epoll set: %w", err)
	}
	gate := os.NewFile(uintptr(gatefd), "srt-relay-gate")
	undo = append(undo, func() { gate.Close() })
	// NewFile ignores a failure to add the descriptor to the netpoller
	// (no epoll watches left, say); a file outside it takes no deadline.
	if err = gate.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("epoll set not in Go's netpoller: %w", err)
	}
	rc, err := gate.SyscallConn()
	if err != nil {
		return fmt.Errorf("epoll set: %w", err)
	}
	for _, m := range []struct {
		set, fd int
		ev      unix.EpollEvent
	}{
		{epfd, wakefd, unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeKey}},
		// Nothing reads the gate's events: what it reports is that the
		// netpoller should wake the loop.
		{gatefd, epfd, unix.EpollEvent{Events: unix.EPOLLIN}},
		{gatefd, tickfd, unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET}},
	} {
		if err = unix.EpollCtl(m.set, unix.EPOLL_CTL_ADD, m.fd, &m.ev); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	r.epfd, r.tickfd, r.wakefd, r.gatefd = epfd, tickfd, wakefd, gatefd
	r.running = true
	if r.windows == nil {
		r.windows = make(map[time.Duration]int)
		r.in, r.out = newRecvBatch(), newSendBatch()
		r.events = make([]unix.EpollEvent, eventsPerLook)
	}
	go r.loop(gate, rc)
	return nil
}

// poll returns the ready events, without waiting.
func (r *reactor) poll() int {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(r.epfd), uintptr(unsafe.Pointer(&r.events[0])),
		uintptr(len(r.events)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

// listen has the gate report the set, or not. Silenced, datagrams
// arriving on the sessions' sockets wake nobody: they wait for a tick.
func (r *reactor) listen(on bool) {
	var ev unix.EpollEvent
	if on {
		ev.Events = unix.EPOLLIN
	}
	_, _, _ = unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(r.gatefd), unix.EPOLL_CTL_MOD, uintptr(r.epfd), uintptr(unsafe.Pointer(&ev)), 0, 0)
}

// tick makes the timerfd fire every d, or never for 0.
func (r *reactor) tick(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	spec := unix.ItimerSpec{Interval: ts, Value: ts}
	_, _, _ = unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, uintptr(r.tickfd), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
}

// rawRead empties a timerfd or eventfd, and reports whether there was
// anything to read. Like every system call the loop makes per wake-up it
// cannot block, and it is made raw: the runtime's entry for a call that
// may block would wake its monitor thread, two context switches for
// nothing.
func rawRead(fd int) bool {
	var buf [8]byte
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), 8)
	return e == 0 && n == 8
}

// loop relays until the reactor has no sessions left. All of it runs
// inside one RawConn.Read of the gate: each call of step handles one
// wake-up (see relay) and returns false to wait for the next. One Read
// for the whole life of the loop matters. Read forgets, before its first
// call, the readiness the netpoller noted meanwhile, so a Read per
// wake-up had to look at the set once more before parking, in case a
// datagram came in between, and that look usually found nothing: a
// system call per wake-up for nothing. Within one Read the netpoller
// keeps what arrives while step runs, and step looks at the set only
// when woken.
func (r *reactor) loop(gate *os.File, rc syscall.RawConn) {
	defer gate.Close() // not inside Read: Close waits for it to return
	var (
		b       batcher
		every   time.Duration // the timer's period while ticking
		stopped bool
	)
	// A method value or closure made per wake-up would allocate.
	step := func(uintptr) bool {
		n := 0
		if b.ticking {
			if !rawRead(r.tickfd) {
				return false // woken by a datagram that came before the set was silenced
			}
			// A late tick reads as several expirations; it still counts
			// as one. The batcher weighs what a tick found against what
			// a wake-up serves, and a late tick cost one wake-up however
			// many windows it spanned.
			r.ticks.Add(1)
			n = r.poll()
		} else {
			if n = r.poll(); n == 0 {
				return false
			}
			r.wakes.Add(1)
		}
		stopped = !r.relay(&b, &every, n)
		return stopped
	}
	for !stopped {
		if err := rc.Read(step); err != nil && !stopped {
			// start checked that the netpoller takes the gate, and only
			// this loop closes it: this cannot happen. Should it, end
			// the sessions rather than leave them without a relay.
			for _, p := range r.pairs.slots {
				if p != nil {
					p.s.End(EndStopped, fmt.Errorf("relay: waiting on the epoll set: %w", err))
				}
			}
			stopped = !r.dispatch(0)
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// relay handles one wake-up, by datagrams or a tick, whose look at the
// set found n events, and decides whether to batch from here on. It
// looks again until a look takes all there was: the set is
// level-triggered, and what a look leaves behind (more ready sockets
// than it returns, a socket with more than pumpRounds batches) would
// wake nobody, or wait a tick more. It reports false when the reactor
// has stopped.
func (r *reactor) relay(b *batcher, every *time.Duration, n int) bool {
	r.flooded, r.moved = false, 0
	for {
		r.undrained = false
		if !r.dispatch(n) {
			return false
		}
		if !r.undrained && n < len(r.events) {
			break
		}
		if n = r.poll(); n == 0 {
			break
		}
	}
	// Batching is off while a session asked for none, and while a
	// socket has more queued than a wake-up takes from it: datagrams
	// then come faster than ticks can drain them, and waiting would
	// only fill socket buffers. Anything less is no reason: a busy
	// machine batches better than it listens, since every wake-up
	// costs, and a whole batch in one read is what batching is for
	// (make load at 100 streams of 2 Mbit/s lost far less batching
	// through than ending batching at one full batch).
	if r.window <= 0 || r.flooded {
		if b.ticking {
			b.stop(time.Now())
			r.stopTicking()
		}
		return true
	}
	switch now := time.Now(); {
	case b.ticking:
		if !b.ticked(now, r.window, r.moved) {
			r.stopTicking()
		} else if *every != r.window { // sessions came or went
			*every = r.window
			r.tick(*every)
		}
	case b.woke(now, r.window, r.moved):
		*every = r.window
		r.listen(false)
		r.tick(*every)
	}
	return true
}

// stopTicking goes back to listening to the set.
func (r *reactor) stopTicking() {
	r.tick(0)
	rawRead(r.tickfd)
	r.listen(true) // the gate reports at once if the set has something
}

// dispatch relays for the n events poll returned. It reports false when
// the reactor has stopped.
func (r *reactor) dispatch(n int) bool {
	for i := range n {
		ev := &r.events[i]
		key := uint32(ev.Fd)
		if key == wakeKey {
			rawRead(r.wakefd)
			continue
		}
		if p := r.pairs.get(key); p != nil {
			r.pump(p, ev.Pad == 1)
		}
	}
	return !r.pending.Load() || r.apply()
}

// apply registers new pairs and closes removed ones. It reports false,
// having closed the epoll set, when no sessions are left: the loop ends.
func (r *reactor) apply() bool {
	r.mu.Lock()
	r.pending.Store(false)
	var adds []*relayPair
	for _, p := range r.adds {
		// One that ended meanwhile is in removes too.
		if p.state == pairAdded {
			adds = append(adds, p)
		}
	}
	removes := r.removes
	r.adds, r.removes = nil, nil
	r.mu.Unlock()

	for _, p := range adds {
		if err := r.register(p); err != nil {
			p.s.End(EndStopped, fmt.Errorf("relay registration: %w", err))
		}
	}
	for _, p := range removes {
		if p.key != 0 {
			_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, p.caller.fd, nil)
			_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, p.upstream.fd, nil)
			r.pairs.drop(p.key)
			p.key = 0
			r.countWindow(p.s.BatchWindow, -1)
		}
		p.closeSockets()
		// Finishing runs the owner's OnEnd (logging): not on the relay's
		// time.
		go p.s.leaveLoop()
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.load -= len(removes)
	if r.pairs.n > 0 || len(r.adds) > 0 || len(r.removes) > 0 || r.pending.Load() {
		return true
	}
	r.running = false // the loop closes the gate on its way out
	unix.Close(r.epfd)
	unix.Close(r.tickfd)
	unix.Close(r.wakefd)
	return false
}

func (r *reactor) register(p *relayPair) error {
	key := r.pairs.put(p)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(key), Pad: 0}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, p.caller.fd, &ev); err != nil {
		r.pairs.drop(key)
		return fmt.Errorf("epoll_ctl caller socket: %w", err)
	}
	ev.Pad = 1
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, p.upstream.fd, &ev); err != nil {
		_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, p.caller.fd, nil)
		r.pairs.drop(key)
		return fmt.Errorf("epoll_ctl upstream socket: %w", err)
	}
	p.key = key
	r.countWindow(p.s.BatchWindow, 1)
	return nil
}

// countWindow counts a session in or out of its batch window, and keeps
// the reactor's the smallest: a session that asked for none gets none.
func (r *reactor) countWindow(w time.Duration, delta int) {
	w = max(w, 0)
	if r.windows[w] += delta; r.windows[w] <= 0 {
		delete(r.windows, w)
	}
	r.window = 0
	first := true
	for w := range r.windows {
		if first || w < r.window {
			r.window, first = w, false
		}
	}
}

// pump relays what one of a pair's sockets has queued to the other.
func (r *reactor) pump(p *relayPair, fromUpstream bool) {
	s := p.s
	src, dst := p.caller, p.upstream
	if fromUpstream {
		src, dst = p.upstream, p.caller
	}
	full := false // the last read filled a whole batch
	for range pumpRounds {
		if s.ended() {
			// Its sockets close when the reactor applies the removal;
			// until then what arrives is read and dropped, or the
			// level-triggered set would report it again at once.
			_, _ = r.in.recv(src.fd)
			return
		}
		k, err := r.in.recv(src.fd)
		r.moved += k
		full = k == batchSize
		if err != nil {
			switch err {
			case unix.EAGAIN, unix.EINTR:
				return
			case unix.ECONNREFUSED:
				// An ICMP error from an earlier send (EPOLLERR brings us
				// here). From the upstream it may mean the origin is
				// gone (see origin.go); from the caller, SRT's own
				// timers decide.
				if fromUpstream {
					s.upstreamRefused()
				}
				continue
			}
			if fromUpstream {
				s.End(EndUpstreamError, fmt.Errorf("reading from upstream %s: %w", s.UpstreamAddr, err))
			} else {
				s.End(EndCallerError, fmt.Errorf("reading from caller %s: %w", s.Caller, err))
			}
			return
		}
		var shutdown bool
		for i := 0; i < k && !shutdown; i++ {
			d := r.in.datagram(i)
			if fromUpstream {
				var relay bool
				if relay, shutdown = s.takeFromUpstream(d); !relay {
					continue
				}
			} else {
				if len(d) == 0 {
					continue
				}
				var relay bool
				if relay, shutdown = s.takeFromCaller(d); !relay {
					if s.ended() { // a restarted caller replaced this one
						break
					}
					continue
				}
			}
			r.out.queue(d)
		}
		if s.ended() && !shutdown {
			// Ended meanwhile (kicked, idle, restarted caller): End has
			// sent its SHUTDOWNs, nothing may follow them.
			r.out.k = 0
			return
		}
		gso := dst.gsoErr == nil
		if err := r.out.send(dst); err != nil && !s.ended() && !fromUpstream && errors.Is(err, unix.ECONNREFUSED) {
			s.upstreamRefused()
		} else if err != nil && !s.ended() {
			s.Logger.Debug("relaying", zap.String("session", s.ID), zap.Bool("to_caller", fromUpstream), zap.Error(err))
		}
		if gso && dst.gsoErr != nil {
			s.Logger.Info("relaying without UDP segmentation offload: the route refused it",
				zap.String("session", s.ID), zap.Stringer("caller", s.Caller), zap.String("upstream", s.UpstreamAddr),
				zap.Bool("to_caller", fromUpstream), zap.Error(dst.gsoErr))
		}
		if shutdown {
			if fromUpstream {
				s.End(EndUpstreamShutdown, nil)
			} else {
				s.End(EndCallerShutdown, nil)
			}
			return
		}
		if k < batchSize {
			return
		}
	}
	// Rounds used up: the loop looks at the set again before it waits.
	r.undrained = true
	r.flooded = r.flooded || full
}
