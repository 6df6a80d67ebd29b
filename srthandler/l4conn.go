package srthandler

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/mholt/caddy-l4/layer4"
	"github.com/srtroute/caddy-l4-srt/internal/session"
	"go.uber.org/zap"
)

// This file holds what caddy-l4 v0.1.2 makes the handler do, in one
// place to shrink when caddy-l4 fixes it.

// pendingBuf is the buffer a handshake in progress reads with. Handshake
// datagrams fit the MTU; a longer one arrives split by caddy-l4 and is
// dropped as malformed.
const pendingBuf = 2048

// quietPeriod is how long a handler waits for the next datagram of a
// caller before letting its connection go. caddy-l4's packet deadlines
// have one-second precision, so this must be at least that.
//
// Every read of a caddy-l4 connection here has a deadline of at most
// quietPeriod, so the connection's own idle timer (the layer4 server's
// idle_timeout, 30 s by default; it must not be set below quietPeriod)
// never fires while a handler reads it. That matters because caddy-l4
// then reports the end of the connection as io.EOF, the same way it
// reports an empty datagram.
const quietPeriod = 2 * time.Second

// datagramReader reads whole datagrams from a caddy-l4 connection: an
// empty one as (0, nil), one caddy-l4 cannot deliver as errOversize.
type datagramReader struct {
	cx   *layer4.Connection
	held []byte // a datagram read elsewhere, for next to return first
}

func (d *datagramReader) Read(b []byte) (int, error) {
	n, err := d.cx.Read(b)
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		if dropped(d.cx) {
			return 0, errDropped
		}
		return 0, nil // an empty datagram: see quietPeriod
	case n == 0 && err == nil:
		return 0, errOversize
	}
	return n, err
}

// errDropped: caddy-l4 has dropped the connection (its idle timer, or a
// Close for the same address that it took for this connection); every
// further Read would return io.EOF at once.
var errDropped = errors.New("caddy-l4 dropped the connection")

// dropped tells, after a Read returned io.EOF, a connection caddy-l4 has
// dropped from an empty datagram. WaitForMore returns at once on a closed
// channel and stores a datagram that comes for the next Read; a Read past
// its deadline then returns that datagram, or, with none stored, fails
// with the deadline (see release.go).
func dropped(cx *layer4.Connection) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	err := cx.WaitForMore(ctx)
	cancel()
	if err != nil {
		return false // open and quiet: it was an empty datagram
	}
	_ = cx.SetReadDeadline(time.Unix(1, 0))
	defer func() { _ = cx.SetReadDeadline(time.Time{}) }()
	var b [0]byte
	_, err = cx.Read(b[:])
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// next reads the caller's next datagram, or fails after quietPeriod.
func (d *datagramReader) next(buf []byte) (int, error) {
	if d.held != nil {
		n := copy(buf, d.held)
		d.held = nil
		return n, nil
	}
	if err := d.cx.SetReadDeadline(time.Now().Add(quietPeriod)); err != nil {
		return 0, err
	}
	n, err := d.Read(buf)
	_ = d.cx.SetReadDeadline(time.Time{})
	return n, err
}

// unread has next return p, once, before reading on.
func (d *datagramReader) unread(p []byte) { d.held = append(d.held[:0], p...) }

var errOversize = errors.New("datagram larger than caddy-l4 can deliver")

// drainQuiet reads and discards from c, caddy-l4's packet connection,
// until nothing came for quietPeriod (io.EOF is an empty datagram: see
// quietPeriod).
func drainQuiet(c net.Conn, buf []byte) {
	for {
		if err := c.SetReadDeadline(time.Now().Add(quietPeriod)); err != nil {
			return
		}
		if _, err := c.Read(buf); err != nil && !errors.Is(err, io.EOF) {
			return
		}
	}
}

// drainCaller keeps reading the caller while the upstream handshake runs:
// a libsrt caller repeats its conclusion every 250 ms, and a caddy-l4
// connection whose queue fills stalls the whole listener. The repeats need
// no answer until the upstream's response exists.
func drainCaller(cx *layer4.Connection) (stop func()) {
	l := newConnLink(cx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, pendingBuf)
		for {
			if _, err := l.Read(buf); err != nil {
				return
			}
		}
	}()
	return func() {
		_ = l.Close()
		<-done
		_ = cx.SetReadDeadline(time.Time{})
	}
}

// connLink relays a session through the caddy-l4 connection its caller
// came in on.
type connLink struct {
	cx     *layer4.Connection
	in     datagramReader
	closed atomic.Bool
}

func newConnLink(cx *layer4.Connection) *connLink {
	return &connLink{cx: cx, in: datagramReader{cx: cx}}
}

var errLinkClosed = errors.New("caller link closed")

// Read waits in quietPeriod steps (see there) until a datagram comes or
// the link is closed.
func (l *connLink) Read(b []byte) (int, error) {
	for {
		if err := l.cx.SetReadDeadline(time.Now().Add(quietPeriod)); err != nil {
			return 0, err
		}
		// Checked after setting the deadline: Close's own deadline may
		// just have been overwritten.
		if l.closed.Load() {
			return 0, errLinkClosed
		}
		n, err := l.in.Read(b)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		return n, err
	}
}

// Write goes straight to the underlying packet connection, which is safe
// for concurrent use, unlike the Connection's byte counters.
func (l *connLink) Write(b []byte) (int, error) { return l.cx.Conn.Write(b) }

// Close unblocks Read; the connection itself belongs to caddy-l4.
func (l *connLink) Close() error {
	l.closed.Store(true)
	return l.cx.SetReadDeadline(time.Now())
}

// serveStray serves a datagram of another caller that a new session
// socket caught in the instant between its bind and its connect (see
// session.DialFrom): as if caddy-l4 had delivered it, with answers sent
// from the listener's socket.
func (h *Handler) serveStray(listener *layer4.Connection, st session.Stray) {
	if s := h.registry.Lookup(sessionKey(listener, st.From)); s != nil && s.FromCaller(st.Data) {
		return
	}
	pc, ok := listener.Conn.(net.PacketConn)
	if !ok {
		return
	}
	h.logger.Debug("serving a datagram a new session socket caught", zap.Stringer("caller", st.From))
	conn := &strayConn{pc: pc, local: listener.LocalAddr(), remote: net.UDPAddrFromAddrPort(st.From), first: st.Data}
	_ = h.Handle(layer4.WrapConnection(conn, nil, h.logger), nil)
}

// errStrayDone ends a stray's handling after its one datagram: the
// caller's later datagrams reach the listener as usual.
var errStrayDone = errors.New("no more datagrams on this path")

// strayConn presents one caught datagram to Handle as a caddy-l4
// connection would, and sends answers from the listener's socket.
type strayConn struct {
	pc            net.PacketConn
	local, remote net.Addr
	first         []byte
	read          bool
}

func (c *strayConn) Read(b []byte) (int, error) {
	if c.read {
		return 0, errStrayDone
	}
	c.read = true
	return copy(b, c.first), nil
}

func (c *strayConn) Write(b []byte) (int, error)      { return c.pc.WriteTo(b, c.remote) }
func (c *strayConn) Close() error                     { return nil }
func (c *strayConn) LocalAddr() net.Addr              { return c.local }
func (c *strayConn) RemoteAddr() net.Addr             { return c.remote }
func (c *strayConn) SetDeadline(time.Time) error      { return nil }
func (c *strayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *strayConn) SetWriteDeadline(time.Time) error { return nil }
