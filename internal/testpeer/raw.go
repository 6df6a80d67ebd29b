package testpeer

import (
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// RawCaller sends hand-built SRT datagrams, for the shapes no real peer
// produces (forged cookies, HSv4, oversized datagrams). What it checks is
// always the proxy's behaviour towards real backends.
type RawCaller struct {
	Conn     *net.UDPConn
	SocketID uint32
	t        testing.TB
}

// NewRawCaller opens a UDP socket connected to the proxy.
func NewRawCaller(t testing.TB, proxy string, socketID uint32) *RawCaller {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &RawCaller{Conn: c, SocketID: socketID, t: t}
}

// NewRawCallerFrom is NewRawCaller from a given local address, e.g.
// "127.0.0.3:0": another source for per-source limits.
func NewRawCallerFrom(t testing.TB, local, proxy string, socketID uint32) *RawCaller {
	t.Helper()
	la, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := net.ResolveUDPAddr("udp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", la, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &RawCaller{Conn: c, SocketID: socketID, t: t}
}

// Send writes one datagram.
func (c *RawCaller) Send(b []byte) {
	c.t.Helper()
	if _, err := c.Conn.Write(b); err != nil {
		c.t.Fatalf("raw caller: %v", err)
	}
}

// Recv reads one datagram, or returns nil after d.
func (c *RawCaller) Recv(d time.Duration) []byte {
	_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	b := make([]byte, wire.MaxDatagram)
	n, err := c.Conn.Read(b)
	if err != nil {
		return nil
	}
	return b[:n]
}

// Induction is a caller induction as libsrt sends it.
func (c *RawCaller) Induction() []byte {
	return wire.AppendInduction(nil, c.SocketID, 12345, 1500, 8192, [16]byte{}, 0)
}

// Conclusion is a caller conclusion. Version 5 carries an HSREQ (what
// gosrt requires) and, when streamID is not empty, a SID block; version 4
// carries no extensions, as HSv4 callers send.
func (c *RawCaller) Conclusion(version, cookie uint32, streamID string) []byte {
	hs := wire.Handshake{
		Header:     wire.Header{Control: true, Type: wire.CtrlHandshake},
		Version:    version,
		ISN:        12345,
		MTU:        1500,
		FlowWindow: 8192,
		Type:       wire.HSConclusion,
		SocketID:   c.SocketID,
		Cookie:     cookie,
	}
	if version == 4 {
		hs.ExtField = 2
		return hs.Append(nil)
	}
	hs.ExtField = wire.ExtFlagHSREQ
	// HSREQ: SRT version 1.5.0, flags TSBPDSND|TSBPDRCV|TLPKTDROP|
	// PERIODICNAK|REXMITFLG, 120 ms latency both ways.
	ext := wire.AppendExtension(nil, wire.ExtHSREQ, []byte{0, 1, 5, 0, 0, 0, 0, 0x3B, 0, 120, 0, 120})
	if streamID != "" {
		hs.ExtField |= wire.ExtFlagCONFIG
		ext = wire.AppendExtension(ext, wire.ExtSID, wire.AppendStreamID(nil, streamID))
	}
	hs.Extensions = ext
	return hs.Append(nil)
}

// Handshake performs induction and conclusion and returns the proxy's
// answer to the conclusion (nil if none came).
func (c *RawCaller) Handshake(version uint32, streamID string, d time.Duration) []byte {
	c.t.Helper()
	c.Send(c.Induction())
	resp := c.Recv(d)
	hs, err := wire.ParseHandshake(resp)
	if err != nil || hs.Type != wire.HSInduction {
		c.t.Fatalf("raw caller %d from %s: no induction response (%v): %x", c.SocketID, c.Conn.LocalAddr(), err, resp)
	}
	c.Send(c.Conclusion(version, hs.Cookie, streamID))
	return c.Recv(d)
}

// OpenSockets counts the sockets this process has open.
func OpenSockets(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, e := range entries {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// OurGoroutines counts the goroutines running the plugin's own code
// (sessions, handlers); test code and libraries are not counted.
func OurGoroutines() int { return len(OurGoroutineStacks()) }

// OurGoroutineStacks returns the stacks OurGoroutines counts, for a test
// to show what was left running.
func OurGoroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var ours []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "caddy-l4-srt/internal/session.") || strings.Contains(g, "caddy-l4-srt/srthandler.") {
			ours = append(ours, g)
		}
	}
	return ours
}

// As is a raw caller on the same socket that presents another socket ID,
// as a restarted caller on a fixed source port would.
func (c *RawCaller) As(socketID uint32) *RawCaller {
	return &RawCaller{Conn: c.Conn, SocketID: socketID, t: c.t}
}
