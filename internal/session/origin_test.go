package session

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// startOriginSession runs a session between the test's caller end and
// upstream end, relayed by the reactor or by goroutines.
func startOriginSession(t *testing.T, reactor bool) (callerEnd, upstreamEnd *net.UDPConn, s *Session) {
	t.Helper()
	was := useReactor
	useReactor = reactor
	t.Cleanup(func() { useReactor = was })
	callerEnd, link := pipe(t)
	upstreamEnd, up := pipe(t)
	t.Cleanup(func() { callerEnd.Close(); upstreamEnd.Close() })
	s = New(Config{
		Caller:         netip.MustParseAddrPort(callerEnd.LocalAddr().String()),
		CallerSocket:   0x1111,
		Upstream:       up,
		UpstreamAddr:   upstreamEnd.LocalAddr().String(),
		UpstreamSocket: 0x2222,
		IdleTimeout:    time.Minute,
	})
	if err := s.Start(NewRegistry(), link, PathSocket); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.End(EndKicked, nil); s.Wait() })
	return callerEnd, upstreamEnd, s
}

func dataPacket(dest uint32) []byte {
	return append(wire.Header{DestSocket: dest}.Append(nil), make([]byte, 100)...)
}

// TestOriginGoneEndsSession: once nothing listens on the upstream's port,
// the session ends within a fraction of a second, by itself (the probe),
// and the caller gets a SHUTDOWN with its own socket ID.
func TestOriginGoneEndsSession(t *testing.T) {
	for name, reactor := range map[string]bool{"reactor": true, "goroutines": false} {
		t.Run(name, func(t *testing.T) {
			callerEnd, upstreamEnd, s := startOriginSession(t, reactor)
			upstreamEnd.Close() // the origin dies
			gone := time.Now()
			callerEnd.Write(dataPacket(0x2222)) // one datagram: its refusal starts the suspicion
			callerEnd.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 2048)
			for {
				n, err := callerEnd.Read(buf)
				if err != nil {
					t.Fatalf("no SHUTDOWN for the caller %v after its origin went: %v", time.Since(gone), err)
				}
				if wire.IsShutdown(buf[:n]) && wire.DestSocketOf(buf[:n]) == 0x1111 {
					break
				}
			}
			if took := time.Since(gone); took > time.Second {
				t.Errorf("caller told after %v, want within 1s", took)
			}
			if r, _ := s.Reason(); r != EndUpstreamGone {
				t.Errorf("session ended with %q, want %q", r, EndUpstreamGone)
			}
		})
	}
}

// TestOneRefusalIsNoProof: a single "connection refused" (anyone who
// knows the four-tuple can forge the ICMP error) followed by a datagram
// from the upstream leaves the session up.
func TestOneRefusalIsNoProof(t *testing.T) {
	for name, reactor := range map[string]bool{"reactor": true, "goroutines": false} {
		t.Run(name, func(t *testing.T) {
			callerEnd, upstreamEnd, s := startOriginSession(t, reactor)
			s.upstreamRefused() // as a forged ICMP error would
			if _, err := upstreamEnd.Write(dataPacket(0x1111)); err != nil {
				t.Fatal(err)
			}
			callerEnd.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 2048)
			if _, err := callerEnd.Read(buf); err != nil {
				t.Fatalf("upstream datagram not relayed: %v", err)
			}
			time.Sleep(2 * refusalConfirm) // past the probe, which the live upstream takes
			s.upstreamRefused()            // another forged one, later: a new suspicion, not proof
			if s.ended() {
				r, err := s.Reason()
				t.Fatalf("session ended (%s, %v) on refusals the upstream disproved", r, err)
			}
		})
	}
}
