package session

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// pipe is a connected pair of loopback UDP sockets.
func pipe(tb testing.TB) (a, b *net.UDPConn) {
	tb.Helper()
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	a, err = net.DialUDP("udp", nil, l.LocalAddr().(*net.UDPAddr))
	if err != nil {
		tb.Fatal(err)
	}
	l.Close()
	b, err = net.DialUDP("udp", l.LocalAddr().(*net.UDPAddr), a.LocalAddr().(*net.UDPAddr))
	if err != nil {
		tb.Fatal(err)
	}
	return a, b
}

// benchSession runs a fast-path session between two socket pairs: the
// test's caller end, the session's caller link and upstream socket, and
// the test's upstream end.
func benchSession(tb testing.TB, window time.Duration) (caller, upstream *net.UDPConn, s *Session) {
	callerEnd, link := pipe(tb)
	upstreamEnd, up := pipe(tb)
	s = New(Config{
		Caller:         netip.MustParseAddrPort(callerEnd.LocalAddr().String()),
		CallerSocket:   1,
		Upstream:       up,
		UpstreamAddr:   upstreamEnd.LocalAddr().String(),
		UpstreamSocket: 2,
		IdleTimeout:    time.Minute,
		BatchWindow:    window,
	})
	if err := s.Start(NewRegistry(), link, PathSocket); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.End(EndStopped, nil)
		s.Wait()
		callerEnd.Close()
		upstreamEnd.Close()
	})
	return callerEnd, upstreamEnd, s
}

// BenchmarkRelay measures the per-packet cost of the fast path, caller to
// upstream, over real loopback sockets: a 1316-byte data packet in, out,
// and read by the far end, relayed by the reactor and, for comparison, by
// a goroutine per direction. Allocations are counted process-wide, so the
// relay's own are in the figure: it must stay at 0 per packet.
func BenchmarkRelay(b *testing.B) {
	eachRelay(b, func(b *testing.B, r relay) {
		if r.window > 0 {
			// A sender that waits for its packets to arrive measures
			// the batch window, not the relay (BenchmarkRelayPaced).
			b.Skip("closed loop")
		}
		benchmarkRelay(b, r)
	})
}

// relay is a way a fast-path session is relayed.
type relay struct {
	name    string
	reactor bool
	window  time.Duration // the session's BatchWindow
}

var relays = []relay{
	{"reactor", true, 0},
	{"reactor-batch", true, 2 * time.Millisecond},
	{"goroutines", false, 0},
}

// eachRelay runs bench as a sub-benchmark for each relay.
func eachRelay(b *testing.B, bench func(b *testing.B, r relay)) {
	for _, r := range relays {
		b.Run(r.name, func(b *testing.B) { bench(b, r) })
	}
}

// selectRelay makes the sessions tb starts use the reactor or not, until
// tb ends. Where the reactor is unavailable it stays off.
func selectRelay(tb testing.TB, r relay) {
	was := useReactor
	useReactor = r.reactor && was
	tb.Cleanup(func() { useReactor = was })
}

func benchmarkRelay(b *testing.B, r relay) {
	selectRelay(b, r)
	caller, upstream, _ := benchSession(b, r.window)
	pkt := append(wire.Header{Seq: 1, DestSocket: 2}.Append(nil), make([]byte, 1316)...)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, err := upstream.Read(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	// Keep at most a window of packets in flight, so that no socket
	// buffer overflows and every packet is accounted for.
	const window = 64
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for int64(i)-got.Load() >= window {
			time.Sleep(10 * time.Microsecond)
		}
		if _, err := caller.Write(pkt); err != nil {
			b.Fatal(err)
		}
	}
	for got.Load() < int64(b.N) {
		time.Sleep(10 * time.Microsecond)
	}
	b.StopTimer()
	upstream.Close()
	<-done
}

// BenchmarkClassify measures what the relay looks at per packet: is it a
// control packet, which type, and for ACKs the link figures.
func BenchmarkClassify(b *testing.B) {
	data := append(wire.Header{Seq: 7, DestSocket: 9}.Append(nil), make([]byte, 1316)...)
	ack := wire.Header{Control: true, Type: wire.CtrlACK, DestSocket: 9}.Append(nil)
	ack = append(ack, make([]byte, 28)...)
	var l linkStats
	b.ReportAllocs()
	for i := range b.N {
		p := data
		if i%8 == 0 {
			p = ack
		}
		if observe(p, &l) {
			b.Fatal("not a shutdown")
		}
		if wire.DestSocketOf(p) != 9 {
			b.Fatal("dest")
		}
	}
}

// TestRelayAllocatesNothing keeps the 0-allocation goal from regressing
// quietly: the relay of 2000 packets must not allocate per packet.
func TestRelayAllocatesNothing(t *testing.T) {
	for _, relay := range relays {
		r := testing.Benchmark(func(b *testing.B) { benchmarkRelay(b, relay) })
		if r.N == 0 {
			t.Fatal("benchmark did not run")
		}
		// A handful of allocations over the whole run (timers, the
		// runtime) are not per packet.
		if perPacket := float64(r.MemAllocs) / float64(r.N); perPacket > 0.01 {
			t.Errorf("%s: %.3f allocations per relayed packet (%d over %d packets)", relay.name, perPacket, r.MemAllocs, r.N)
		}
	}
}
