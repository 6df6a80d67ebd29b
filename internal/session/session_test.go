package session

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// memLink is a caller link with nothing to read: Read blocks until Close.
type memLink struct {
	once   sync.Once
	closed chan struct{}
}

func newMemLink() *memLink { return &memLink{closed: make(chan struct{})} }

func (l *memLink) Read([]byte) (int, error) {
	<-l.closed
	return 0, errors.New("link closed")
}
func (l *memLink) Write(b []byte) (int, error) { return len(b), nil }
func (l *memLink) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// On the listener path a handler calls ServeLink, after a reload Attach
// and ServeLink again, while anything may end the session. A loop must
// never start after End (sync.WaitGroup panics when one is added while
// its Wait returns), and Wait must come back.
func TestServeLinkRacesEnd(t *testing.T) {
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	reg := NewRegistry()
	for i := range 20000 {
		up, err := net.DialUDP("udp", nil, sink.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		s := New(Config{
			Caller:   netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1+i%60000)),
			Upstream: up, IdleTimeout: time.Minute,
		})
		first := newMemLink()
		if err := s.Start(reg, first, false); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); s.ServeLink(first) }()
		go func() { defer wg.Done(); s.End(EndKicked, nil) }()
		second := newMemLink()
		s.Attach(second)
		s.ServeLink(second)
		wg.Wait()
		waitFinished(t, s, i)
	}
}

// waitFinished fails the test unless s finishes (Wait returns) within
// five seconds.
func waitFinished(t *testing.T, s *Session, iteration int) {
	t.Helper()
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("iteration %d: Wait did not return", iteration)
	}
}
