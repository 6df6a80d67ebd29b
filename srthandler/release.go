package srthandler

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/mholt/caddy-l4/layer4"
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
// WaitForMore, whose timeout is exact: releaseQuiet after our answer
// (a real caller's conclusion within it is served on this connection as
// before). Then it asks caddy-l4 to drop the connection (Close) and reads
// on until caddy-l4 has done so: only then can no datagram be queued for
// it. WaitForMore sees the closed channel without reporting it back to
// caddy-l4 (a Read would, and caddy-l4 would take that report for the
// next connection of the same address and tear it down); a Read with an
// expired deadline then tells a datagram WaitForMore took (returned
// whatever the deadline) from the closed channel (deadline exceeded).
// Empty datagrams are told apart this way too: caddy-l4 reports them as
// io.EOF, like a closed connection.

// releaseQuiet is how long a caller that has nothing pending must stay
// silent before its connection is let go. It outlasts the gap inside a
// burst from one sender by far; a caller further away than this answers
// on a new connection, which a cookie makes no different.
const releaseQuiet = 10 * time.Millisecond

// release drives the letting go of one caddy-l4 connection.
type release struct {
	cx      *layer4.Connection
	closing bool
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
	_ = r.cx.Conn.Close()
}

// next reads the next non-empty datagram, or reports done once caddy-l4
// has dropped the connection.
func (r *release) next(buf []byte) (n int, done bool) {
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
