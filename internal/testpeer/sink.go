package testpeer

import (
	"net"
	"sync/atomic"
	"testing"
)

// Sink is a UDP socket that counts what reaches it: an "origin" that
// must get nothing, or the output of a player that must get something.
type Sink struct {
	Addr      string
	datagrams atomic.Int64
	bytes     atomic.Int64
}

// Datagrams and Bytes say what arrived so far.
func (s *Sink) Datagrams() int64 { return s.datagrams.Load() }
func (s *Sink) Bytes() int64     { return s.bytes.Load() }

// StartSink opens a sink on a free localhost port; it closes, and its
// reader ends, when the test ends.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{Addr: c.LocalAddr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			s.datagrams.Add(1)
			s.bytes.Add(int64(n))
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return s
}
