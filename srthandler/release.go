package srthandler

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mholt/caddy-l4/layer4"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Letting go of a caller that has nothing pending, at once: a spoofed
// induction, a forged conclusion, garbage. caddy-l4 v0.1.2 gives every
// new source address a map entry, a channel and a goroutine (the one
// Handle runs on) before any matcher runs; a handler that waited for
// such a source to go quiet (quietPeriod, whole seconds: caddy-l4's
// deadlines have that precision) held all of that for seconds per
// spoofed datagram.
//
// Returning at once is what deadlocks caddy-l4 (see Handle): its server
// loop blocks handing a sixth queued datagram to a connection nobody
// reads. So the handler first makes sure the sender is quiet, with
// WaitForMore, whose timeout is exact: releaseQuiet after the datagram
// (a sender's burst comes within it). Then it asks caddy-l4 to drop the
// connection (Close, which can block, so aside; see start) and reads on
// until caddy-l4 has done so: only then can no datagram be queued for
// it. Once Close is through, WaitForMore sees the closed channel without
// reporting it back to caddy-l4 (a Read would, and caddy-l4 would take
// that report for the next connection of the same address and tear it
// down); a Read with an expired deadline then tells a datagram
// WaitForMore took (returned whatever the deadline) from the closed
// channel (deadline exceeded). Empty datagrams are told apart this way
// too: caddy-l4 reports them as io.EOF, like a closed connection.
//
// Our answer goes out only after that (heldReplies): the caller's next
// datagram must find caddy-l4 done with this connection, and done with
// the Close it makes itself once Handle returns, or that Close could tear
// down the connection the caller's conclusion just opened (gosrt callers
// send their conclusion once).

// releaseQuiet is how long a caller that has nothing pending must stay
// silent before its connection is let go: far longer than the gaps in a
// burst from one sender, and the most a real caller's handshake waits
// for it (with replyDelay) is small beside the 250 ms a libsrt caller
// waits before it repeats a handshake packet.
const releaseQuiet = 5 * time.Millisecond

// release drives the letting go of one caddy-l4 connection.
type release struct {
	cx      *layer4.Connection
	closing bool
	// closed: caddy-l4 has taken our Close (it may not have acted on it).
	closed atomic.Bool
	big    []byte // whole datagrams while the Close is under way
	held   [][]byte
}

// start lets the connection go if the sender stays quiet for
// releaseQuiet; otherwise the datagram that came is read as usual. From
// then on, datagrams are read with next.
func (r *release) start() {
	if r.closing || r.cx.HasMore() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseQuiet)
	err := r.cx.WaitForMore(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		return // a datagram came (or this is no caddy-l4 packet connection)
	}
	r.closing = true
	// Close blocks while caddy-l4's queue of closes is full (a flood);
	// meanwhile this connection must be read on, or its sender fills it
	// and the server loop, blocked on it, never takes the Close: the
	// deadlock. So Close runs aside, and wakes the reader once it is
	// through. The deadline timer it resets is made here: caddy-l4
	// creates it on first use, which must not race.
	_ = r.cx.SetReadDeadline(time.Now().Add(quietPeriod))
	cx := r.cx
	go func() {
		_ = cx.Conn.Close()
		r.closed.Store(true)
		_ = cx.SetReadDeadline(time.Unix(1, 0))
	}()
}

// write answers the caller: at once, or, once letting go has started,
// after Handle has returned (finish).
func (r *release) write(b []byte) error {
	if !r.closing {
		_, err := r.cx.Conn.Write(b)
		return err
	}
	if len(r.held) < maxHeldPerConn {
		r.held = append(r.held, b)
	}
	return nil
}

// maxHeldPerConn bounds the answers one connection holds: a burst read
// while letting go is answered no more than this.
const maxHeldPerConn = 4

// next reads the next non-empty datagram, or reports done once caddy-l4
// has dropped the connection.
func (r *release) next(buf []byte) (n int, done bool) {
	// While Close runs, only plain Reads of whole datagrams: caddy-l4's
	// Close also releases a datagram WaitForMore (or a partial Read)
	// keeps for the next Read, and must not find one being stored.
	for waits := 0; !r.closed.Load(); {
		if r.big == nil {
			r.big = make([]byte, wire.MaxDatagram)
		}
		_ = r.cx.SetReadDeadline(time.Now().Add(quietPeriod))
		if r.closed.Load() {
			break // its wake-up may just have been overwritten
		}
		n, err := r.cx.Read(r.big)
		switch {
		case n > len(buf):
			continue // no SRT packet is this long
		case n > 0:
			return copy(buf, r.big[:n]), false
		case errors.Is(err, os.ErrDeadlineExceeded) && !r.closed.Load():
			// Still waiting for caddy-l4 to take the Close. A server that
			// has stopped never will: give up as a quiet caller would.
			if waits++; waits >= 2 {
				return 0, true
			}
			continue
		}
		// io.EOF: an empty datagram, or caddy-l4 has dropped the
		// connection and Close is about to report it.
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), quietPeriod)
		err := r.cx.WaitForMore(ctx)
		cancel()
		if err != nil {
			return 0, true
		}
		_ = r.cx.SetReadDeadline(time.Unix(1, 0))
		n, err := r.cx.Read(buf)
		_ = r.cx.SetReadDeadline(time.Time{})
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return 0, true // nothing taken: the channel is closed
		case n > 0:
			return n, false
		case err != nil && !errors.Is(err, io.EOF):
			return 0, true
		}
		// An empty datagram: read on.
	}
}

// finish queues the held answers; Handle defers it.
func (r *release) finish() {
	if len(r.held) == 0 {
		return
	}
	pc, ok := r.cx.Conn.(net.PacketConn)
	if !ok {
		for _, b := range r.held {
			_, _ = r.cx.Conn.Write(b)
		}
		return
	}
	to := r.cx.RemoteAddr()
	for _, b := range r.held {
		heldReplies.add(pc, to, b)
	}
	r.held = nil
}

// replyDelay is how long an answer to a let-go caller waits: long enough
// for caddy-l4's server loop to have processed the Close that follows
// Handle's return.
const replyDelay = 5 * time.Millisecond

// maxHeldReplies bounds the answers waiting process-wide (about 150
// bytes each); beyond it a flood's answers are dropped, and a real
// caller whose answer was dropped repeats its induction.
const maxHeldReplies = 16384

type heldReply struct {
	pc  net.PacketConn
	to  net.Addr
	b   []byte
	due time.Time
}

// replyQueue sends answers after replyDelay from one timer: no
// goroutine per answer, and memory bounded by maxHeldReplies.
type replyQueue struct {
	mu    sync.Mutex
	q     []heldReply
	armed bool
}

var heldReplies replyQueue

func (q *replyQueue) add(pc net.PacketConn, to net.Addr, b []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) >= maxHeldReplies {
		return
	}
	q.q = append(q.q, heldReply{pc: pc, to: to, b: b, due: time.Now().Add(replyDelay)})
	if !q.armed {
		q.armed = true
		time.AfterFunc(replyDelay, q.flush)
	}
}

// flush sends what is due and rearms for the rest.
func (q *replyQueue) flush() {
	q.mu.Lock()
	now := time.Now()
	i := 0
	for i < len(q.q) && !q.q[i].due.After(now) {
		i++
	}
	due := make([]heldReply, i)
	copy(due, q.q[:i])
	rest := copy(q.q, q.q[i:])
	clear(q.q[rest:])
	q.q = q.q[:rest]
	if rest > 0 {
		time.AfterFunc(time.Until(q.q[0].due), q.flush)
	} else {
		q.armed = false
	}
	q.mu.Unlock()
	for _, r := range due {
		_, _ = r.pc.WriteTo(r.b, r.to)
	}
}
