package session

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
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
		if err := s.Start(reg, first, PathListener); err != nil {
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

// chanLink is a caller link that reads what the test sends it; closing it
// does not stop that.
type chanLink struct{ in chan []byte }

func (l *chanLink) Read(b []byte) (int, error)  { return copy(b, <-l.in), nil }
func (l *chanLink) Write(b []byte) (int, error) { return len(b), nil }
func (l *chanLink) Close() error                { return nil }

// A datagram from the caller's address that comes after the session ended
// is not the session's: a new caller may have been given the address.
// FromCaller takes nothing, and ServeLink hands it back for the listener
// to serve, rather than the ended session refusing it as a second caller.
func TestEndedSessionLeavesDatagramsToTheListener(t *testing.T) {
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	up, err := net.DialUDP("udp", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{
		Caller:       netip.MustParseAddrPort("127.0.0.1:4000"),
		CallerSocket: 7, Upstream: up, UpstreamSocket: 9, IdleTimeout: time.Minute,
	})
	link := &chanLink{in: make(chan []byte)}
	if err := s.Start(NewRegistry(), link, PathListener); err != nil {
		t.Fatal(err)
	}
	leftover := make(chan []byte, 1)
	go func() { leftover <- s.ServeLink(link) }()

	data := wire.Header{Seq: 1, DestSocket: 9}.Append(nil)
	link.in <- data
	_ = sink.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	if _, err := sink.Read(buf); err != nil {
		t.Fatalf("the live session relayed nothing: %v", err)
	}

	s.End(EndKicked, nil)
	if s.FromCaller(data) {
		t.Error("an ended session took a datagram")
	}
	induction := wire.AppendInduction(nil, 8, 1, 1500, 8192, [16]byte{}, 0)
	link.in <- induction
	select {
	case got := <-leftover:
		if string(got) != string(induction) {
			t.Errorf("ServeLink handed back %x, want the new caller's induction", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeLink kept reading after the session ended")
	}
	waitFinished(t, s, 0)
}
