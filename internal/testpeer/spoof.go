package testpeer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// PrivilegedEnv is the environment variable that makes tests needing root
// (raw sockets to forge source addresses, network namespaces, BPF) fail
// instead of skipping when they cannot run: SRT_PRIVILEGED=required, as
// CI sets it.
const PrivilegedEnv = "SRT_PRIVILEGED"

// Spoofer sends UDP datagrams over IPv4 with any source address and port,
// as an attacker on the path (or one whose network does not filter source
// addresses) can. It needs CAP_NET_RAW.
type Spoofer struct {
	fd int
}

// NewSpoofer opens a raw socket, skipping the test without the privilege
// (failing it under SRT_PRIVILEGED=required).
func NewSpoofer(t testing.TB) *Spoofer {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		msg := fmt.Sprintf("raw socket (needs root): %v", err)
		if os.Getenv(PrivilegedEnv) == "required" {
			t.Fatalf("%s (%s=required)", msg, PrivilegedEnv)
		}
		t.Skip(msg)
	}
	// A flood outruns the default send buffer; a full one only blocks.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	t.Cleanup(func() { unix.Close(fd) })
	return &Spoofer{fd: fd}
}

// Send sends payload from from to to, both IPv4.
func (s *Spoofer) Send(from, to netip.AddrPort, payload []byte) error {
	pkt := make([]byte, 28, 28+len(payload))
	// IPv4 header; the kernel fills in the checksum and, being 0, the ID.
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(28+len(payload)))
	pkt[8] = 64
	pkt[9] = unix.IPPROTO_UDP
	src, dst := from.Addr().As4(), to.Addr().As4()
	copy(pkt[12:16], src[:])
	copy(pkt[16:20], dst[:])
	// UDP header; a zero checksum means none, which IPv4 allows.
	binary.BigEndian.PutUint16(pkt[20:], from.Port())
	binary.BigEndian.PutUint16(pkt[22:], to.Port())
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	pkt = append(pkt, payload...)
	for {
		err := unix.Sendto(s.fd, pkt, 0, &unix.SockaddrInet4{Addr: dst})
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("spoofing %s -> %s: %w", from, to, err)
		}
		return nil
	}
}
