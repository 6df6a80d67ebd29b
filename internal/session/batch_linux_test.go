package session

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// batchEnds is a receiving socket and a rawSock connected to it, over
// loopback, where the kernel segments what the batch offloads.
func batchEnds(t testing.TB) (*net.UDPConn, *rawSock) {
	t.Helper()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	rx, err := net.ListenUDP("udp", lo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	if err := rx.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	to := &unix.SockaddrInet4{Port: rx.LocalAddr().(*net.UDPAddr).Port, Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Connect(fd, to); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	tx := &rawSock{fd: fd}
	t.Cleanup(tx.close)
	return rx, tx
}

// datagrams makes one datagram of each size, each telling which it is.
func datagrams(sizes []int) [][]byte {
	out := make([][]byte, len(sizes))
	for i, n := range sizes {
		out[i] = bytes.Repeat([]byte{byte(i + 1)}, n)
		if n >= 2 {
			out[i][0], out[i][1] = 0xAB, byte(i)
		}
	}
	return out
}

// receive reads n datagrams, in a buffer that would hold a run the kernel
// had failed to cut.
func receive(t *testing.T, rx *net.UDPConn, n int) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 1<<16)
	for range n {
		rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", len(got)+1, n, err)
		}
		got = append(got, slices.Clone(buf[:k]))
	}
	rx.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if k, err := rx.Read(buf); err == nil {
		t.Fatalf("a datagram more than the %d sent: %d bytes", n, k)
	}
	return got
}

// Runs of one size leave as one segmented message each, a shorter
// datagram may end a run, and what arrives is exactly the datagrams
// queued, in order: the kernel cuts the runs where the batch says.
func TestSendBatchSegmentsRuns(t *testing.T) {
	if !gsoSupported() {
		t.Skip("the kernel has no UDP_SEGMENT")
	}
	const d = 1332 // a data packet carrying 7 MPEG-TS packets
	for _, tc := range []struct {
		name  string
		sizes []int
		runs  []int // datagrams per message
	}{
		{"one", []int{d}, []int{1}},
		{"a burst of data packets", []int{d, d, d, d, d, d, d, d, d, d}, []int{10}},
		{"an ACKACK ends the run", []int{d, d, d, 16}, []int{4}},
		{"a control packet between runs", []int{d, d, 44, d, d}, []int{3, 2}},
		{"a longer one starts a new run", []int{44, 44, d, d}, []int{2, 2}},
		{"empty datagrams go alone", []int{d, 0, d, d, 0}, []int{1, 1, 2, 1}},
		{"sizes that differ every time", []int{100, 200, 300}, []int{1, 1, 1}},
		{"a full batch", slices.Repeat([]int{d}, batchSize), []int{batchSize}},
		{"runs stop short of an IP packet", slices.Repeat([]int{relayBuf}, batchSize), []int{29, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rx, tx := batchEnds(t)
			b := newSendBatch()
			want := datagrams(tc.sizes)
			for _, p := range want {
				b.queue(p)
			}
			m := b.build(0, true)
			var runs []int
			for i := range m {
				runs = append(runs, int(b.msgs[i].hdr.Iovlen))
			}
			if !slices.Equal(runs, tc.runs) {
				t.Fatalf("messages of %v datagrams, want %v", runs, tc.runs)
			}
			if err := b.send(tx); err != nil {
				t.Fatal(err)
			}
			if tx.gsoErr != nil {
				t.Fatalf("loopback refused segmentation: %v", tx.gsoErr)
			}
			got := receive(t, rx, len(want))
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("datagram %d: got %d bytes %x…, want %d bytes %x…", i, len(got[i]), head(got[i]), len(want[i]), head(want[i]))
				}
			}
		})
	}
}

func head(p []byte) []byte { return p[:min(len(p), 4)] }

// refuseSegments makes sendmmsg behave as on a route that cannot segment
// (the kernel's EIO for a device without checksum offload): messages
// before the first segmented one are sent, then it fails. It counts the
// refusals.
func refuseSegments(t *testing.T, refused *int) {
	real := sendmmsg
	t.Cleanup(func() { sendmmsg = real })
	sendmmsg = func(fd int, msgs []mmsghdr) (int, unix.Errno) {
		for i := range msgs {
			if msgs[i].hdr.Controllen > 0 {
				if i == 0 {
					*refused++
					return 0, unix.EIO
				}
				return real(fd, msgs[:i])
			}
		}
		return real(fd, msgs)
	}
}

// A route that refuses segmentation loses nothing: the refused message
// goes again datagram by datagram, and that socket is never offered a
// segmented message again.
func TestSendBatchFallsBackWhenTheRouteRefuses(t *testing.T) {
	if !gsoSupported() {
		t.Skip("the kernel has no UDP_SEGMENT")
	}
	var refused int
	refuseSegments(t, &refused)
	rx, tx := batchEnds(t)
	b := newSendBatch()
	sizes := []int{44, 1332, 1332, 1332, 16, 1332, 1332}
	for round := range 3 {
		want := datagrams(sizes)
		for _, p := range want {
			b.queue(p)
		}
		if err := b.send(tx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		got := receive(t, rx, len(want))
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("round %d, datagram %d: got %d bytes %x…, want %d bytes %x…", round, i, len(got[i]), head(got[i]), len(want[i]), head(want[i]))
			}
		}
	}
	if !errors.Is(tx.gsoErr, syscall.EIO) {
		t.Fatalf("gsoErr = %v, want EIO", tx.gsoErr)
	}
	if refused != 1 {
		t.Fatalf("%d segmented messages refused, want 1: the socket should stop trying", refused)
	}
}

// An error that is not about segmentation still drops the rest of the
// batch, and says how much.
func TestSendBatchReportsWhatItDropped(t *testing.T) {
	_, tx := batchEnds(t)
	real := sendmmsg
	t.Cleanup(func() { sendmmsg = real })
	calls := 0
	sendmmsg = func(fd int, msgs []mmsghdr) (int, unix.Errno) {
		if calls++; calls == 1 {
			return real(fd, msgs[:1])
		}
		return 0, unix.ENOBUFS
	}
	b := newSendBatch()
	for _, p := range datagrams([]int{44, 1332, 1332, 16, 60}) {
		b.queue(p)
	}
	err := b.send(tx)
	if !errors.Is(err, unix.ENOBUFS) || err.Error() != fmt.Sprintf("4 of 5 datagrams not sent: %v", unix.ENOBUFS) {
		t.Fatalf("send: %v", err)
	}
	if b.k != 0 {
		t.Fatalf("%d datagrams still queued", b.k)
	}
}

// BenchmarkSendBatch writes bursts of data packets through one socket to
// a reader in another goroutine, datagram by datagram and segmented: the
// time a relay spends per datagram in sendmmsg, which over loopback
// includes the receiving side's path up to the socket.
//
//	go test -run XXX -bench SendBatch ./internal/session
func BenchmarkSendBatch(b *testing.B) {
	for _, mode := range []string{"plain", "segmented"} {
		for _, burst := range []int{1, 4, 10} {
			b.Run(fmt.Sprintf("%s/burst=%d", mode, burst), func(b *testing.B) {
				if mode == "segmented" && !gsoSupported() {
					b.Skip("the kernel has no UDP_SEGMENT")
				}
				rx, tx := batchEnds(b)
				go func() {
					buf := make([]byte, 1<<16)
					for {
						if _, err := rx.Read(buf); err != nil {
							return
						}
					}
				}()
				if mode == "plain" {
					tx.gsoErr = errors.New("off for the benchmark")
				}
				sb := newSendBatch()
				pkts := datagrams(slices.Repeat([]int{1332}, burst))
				b.ResetTimer()
				for range b.N {
					for _, p := range pkts {
						sb.queue(p)
					}
					if err := sb.send(tx); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/datagram")
			})
		}
	}
}
