package session

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// pacedRate is the packet rate of BenchmarkRelayPaced: a 10 Mbit/s
// stream of 1316-byte payloads.
const pacedRate = 950

// BenchmarkRelayPaced measures what an operator pays for: the relay's CPU
// time per packet at a live stream's pace, where packets find the relay
// asleep. The peers run in a child process so that only the relay is in
// this process's CPU time (getrusage). It sends b.N data packets from the
// caller end at pacedRate, the upstream end answers every tenth with a
// small control packet, as an SRT receiver's ACKs would. "even" spaces
// the packets evenly, as libsrt's sender does; "bursts" sends them ten at
// a time, as gosrt's sender does on its 10 ms tick.
//
//	go test -run XXX -bench RelayPaced -benchtime 10000x ./internal/session
func BenchmarkRelayPaced(b *testing.B) {
	eachRelay(b, func(b *testing.B, r relay) {
		b.Run("even", func(b *testing.B) { benchmarkRelayPaced(b, r, 1) })
		b.Run("bursts", func(b *testing.B) { benchmarkRelayPaced(b, r, 10) })
	})
}

func benchmarkRelayPaced(b *testing.B, r relay, burst int) {
	selectRelay(b, r)

	child := exec.Command(os.Args[0], "-test.run=^TestPacedPeers$")
	child.Env = append(os.Environ(), "SESSION_PACED_PEERS="+strconv.Itoa(b.N), "SESSION_PACED_BURST="+strconv.Itoa(burst))
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer child.Process.Kill()
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	var callerPort, upstreamPort int
	if _, err := fmt.Sscanf(line, "%d %d", &callerPort, &upstreamPort); err != nil {
		b.Fatalf("child said %q: %v", line, err)
	}
	lo := net.IPv4(127, 0, 0, 1)
	link, err := net.DialUDP("udp", &net.UDPAddr{IP: lo}, &net.UDPAddr{IP: lo, Port: callerPort})
	if err != nil {
		b.Fatal(err)
	}
	up, err := net.DialUDP("udp", &net.UDPAddr{IP: lo}, &net.UDPAddr{IP: lo, Port: upstreamPort})
	if err != nil {
		b.Fatal(err)
	}
	s := New(Config{
		Caller:         netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(callerPort)),
		CallerSocket:   1,
		Upstream:       up,
		UpstreamAddr:   up.RemoteAddr().String(),
		UpstreamSocket: 2,
		IdleTimeout:    time.Minute,
		BatchWindow:    r.window,
	})
	if err := s.Start(NewRegistry(), link, PathSocket); err != nil {
		b.Fatal(err)
	}
	defer func() { s.End(EndStopped, nil); s.Wait() }()

	wakesBefore := relayWakes()
	before, switchesBefore := cpuTime()
	b.ResetTimer()
	fmt.Fprintf(stdin, "%d %d\n", link.LocalAddr().(*net.UDPAddr).Port, up.LocalAddr().(*net.UDPAddr).Port)
	line, err = out.ReadString('\n')
	b.StopTimer()
	after, switchesAfter := cpuTime()
	used := after - before
	if err != nil {
		b.Fatal(err)
	}
	got, _ := strconv.Atoi(strings.TrimSpace(line))
	if got < b.N*99/100 {
		b.Fatalf("the upstream end got %d of %d packets", got, b.N)
	}
	st := s.Stats()
	relayed := st.FromCaller + st.FromUpstream
	b.ReportMetric(float64(used.Nanoseconds())/float64(relayed), "cpu-ns/pkt")
	if r.reactor {
		b.ReportMetric(float64(relayWakes()-wakesBefore)/float64(relayed), "wakes/pkt")
	}
	b.ReportMetric(float64(switchesAfter-switchesBefore)/float64(relayed), "ctxsw/pkt")
}

// relayWakes counts the wake-ups of every reactor, for datagrams or for
// the batch timer.
func relayWakes() uint64 {
	wakes, ticks := RelayWakeups()
	return wakes + ticks
}

// cpuTime returns the CPU time this process has used and the number of
// context switches its threads made: waking up, not copying, is what a
// paced relay pays for.
func cpuTime() (time.Duration, int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw
}

// TestPacedPeers is the child process of BenchmarkRelayPaced.
func TestPacedPeers(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("SESSION_PACED_PEERS"))
	if err != nil {
		t.Skip("the child process of BenchmarkRelayPaced")
	}
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	caller, _ := net.ListenUDP("udp", lo)
	upstream, _ := net.ListenUDP("udp", lo)
	fmt.Printf("%d %d\n", caller.LocalAddr().(*net.UDPAddr).Port, upstream.LocalAddr().(*net.UDPAddr).Port)
	var linkPort, upPort int
	if _, err := fmt.Scanf("%d %d\n", &linkPort, &upPort); err != nil {
		t.Fatal(err)
	}
	linkAddr := &net.UDPAddr{IP: lo.IP, Port: linkPort}
	upAddr := &net.UDPAddr{IP: lo.IP, Port: upPort}

	got := make(chan int)
	go func() {
		buf := make([]byte, 2048)
		ack := wire.Header{Control: true, Type: wire.CtrlACK, DestSocket: 1}.Append(nil)
		ack = append(ack, make([]byte, 28)...)
		count := 0
		for count < n {
			upstream.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := upstream.Read(buf); err != nil {
				break
			}
			count++
			if count%10 == 0 {
				_, _ = upstream.WriteTo(ack, upAddr)
			}
		}
		got <- count
	}()
	go func() { // drain what reaches the caller end
		buf := make([]byte, 2048)
		for {
			if _, err := caller.Read(buf); err != nil {
				return
			}
		}
	}()
	burst, _ := strconv.Atoi(os.Getenv("SESSION_PACED_BURST"))
	burst = max(burst, 1)
	pkt := append(wire.Header{DestSocket: 2}.Append(nil), make([]byte, 1316)...)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i-i%burst) * time.Second / pacedRate)); d > 0 {
			time.Sleep(d)
		}
		_, _ = caller.WriteTo(pkt, linkAddr)
	}
	fmt.Printf("%d\n", <-got)
}
