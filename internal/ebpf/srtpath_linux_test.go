package ebpf

// The program itself, run by the kernel on packets the test makes
// (BPF_PROG_TEST_RUN): no interface, no namespace, but root.

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// requirePrivileged is testpeer.RequirePrivileged, which this package
// cannot import (testpeer runs the plugin, which imports this package).
func requirePrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("SRT_PRIVILEGED") == "required" {
		t.Fatal("needs root (SRT_PRIVILEGED=required)")
	}
	t.Skip("needs root (set SRT_PRIVILEGED=required to fail instead)")
}

const (
	tcActUnspec   = ^uint32(0) // -1: TCX's "next program, else the stack"
	tcActRedirect = 7
)

// loadForTest loads the program and its map, attached nowhere.
func loadForTest(t testing.TB) *srtpathObjects {
	t.Helper()
	requirePrivileged(t)
	objs := new(srtpathObjects)
	if err := loadSrtpathObjects(objs, nil); err != nil {
		t.Fatalf("loading the program: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	return objs
}

var (
	tCaller   = netip.MustParseAddrPort("192.0.2.10:40000")
	tListen   = netip.MustParseAddrPort("192.0.2.1:10080")
	tUpLocal  = netip.MustParseAddrPort("198.51.100.1:51000")
	tOrigin   = netip.MustParseAddrPort("198.51.100.20:9000")
	tSubst    = uint32(0x0A0B0C0D)
	tCallerID = uint32(0x11223344)

	// The IPv6 flow (documentation prefix), in srt_flows6.
	tCaller6  = netip.MustParseAddrPort("[2001:db8:1::10]:40000")
	tListen6  = netip.MustParseAddrPort("[2001:db8:1::1]:10080")
	tUpLocal6 = netip.MustParseAddrPort("[2001:db8:2::1]:51000")
	tOrigin6  = netip.MustParseAddrPort("[2001:db8:2::20]:9000")
)

// tFlow is one family's test flow.
type tFlow struct {
	name                            string
	caller, listen, upLocal, origin netip.AddrPort
}

var tFlows = []tFlow{
	{"IPv4", tCaller, tListen, tUpLocal, tOrigin},
	{"IPv6", tCaller6, tListen6, tUpLocal6, tOrigin6},
}

// install puts the test flows of both families in their maps as Install
// does, with the origin knowing the caller by a substitute ID.
func install(t testing.TB, objs *srtpathObjects) {
	t.Helper()
	for _, f := range tFlows {
		putFlow(t, objs, f.caller, f.listen, f.upLocal, f.origin, 7, 0, ebpf.UpdateNoExist)
		putFlow(t, objs, f.origin, f.upLocal, f.listen, f.caller, 5, tCallerID, ebpf.UpdateNoExist)
	}
}

// putFlow puts in the map of src's family the flow src→dst, readdressed
// as newSrc→newDst and sent out of ifindex.
func putFlow(t testing.TB, objs *srtpathObjects, src, dst, newSrc, newDst netip.AddrPort, ifindex int, rewrite uint32, flags ebpf.MapUpdateFlags) {
	t.Helper()
	var err error
	if src.Addr().Is6() {
		k, v := keyOf6(src, dst), valOf6(newSrc, newDst, ifindex, rewrite)
		err = objs.SrtFlows6.Update(&k, &v, flags)
	} else {
		k, v := keyOf(src, dst), valOf(newSrc, newDst, ifindex, rewrite)
		err = objs.SrtFlows.Update(&k, &v, flags)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// flowStats reads what the program counted of the flow from src to dst.
func flowStats(t testing.TB, objs *srtpathObjects, src, dst netip.AddrPort) srtpathFlowStats {
	t.Helper()
	if src.Addr().Is6() {
		var v srtpathFlowVal6
		k := keyOf6(src, dst)
		if err := objs.SrtFlows6.Lookup(&k, &v); err != nil {
			t.Fatal(err)
		}
		return v.St
	}
	var v srtpathFlowVal
	k := keyOf(src, dst)
	if err := objs.SrtFlows.Lookup(&k, &v); err != nil {
		t.Fatal(err)
	}
	return v.St
}

// udpOff is where the UDP header of a test packet of src's family starts.
func udpOff(src netip.AddrPort) int {
	if src.Addr().Is6() {
		return 14 + 40
	}
	return 14 + 20
}

// packet is an Ethernet frame holding a UDP datagram from src to dst
// (IPv4 or IPv6, as src; an IPv6 header is a fixed one, UDP straight
// after) with payload, its checksums right (udpCsum false leaves the UDP
// checksum 0: none, which IPv6 does not allow).
func packet(src, dst netip.AddrPort, payload []byte, udpCsum bool) []byte {
	off := udpOff(src)
	b := make([]byte, off+8+len(payload))
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 2})
	ip := b[14:off]
	if src.Addr().Is6() {
		binary.BigEndian.PutUint16(b[12:], 0x86dd)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(8+len(payload)))
		ip[6] = 17 // next header: UDP
		ip[7] = 64
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:24], s16[:])
		copy(ip[24:40], d16[:])
	} else {
		binary.BigEndian.PutUint16(b[12:], 0x0800)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
		ip[8] = 64
		ip[9] = 17
		s4, d4 := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:16], s4[:])
		copy(ip[16:20], d4[:])
		binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	}
	udp := b[off:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	if udpCsum {
		c := checksum(udp, pseudo(ip, len(udp)))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(udp[6:], c)
	}
	return b
}

// withExtension is an IPv6 packet with an 8-byte extension header of
// type nh (a hop-by-hop PadN, or a fragment header) before its UDP
// header: what the stack accepts and the program leaves to it.
func withExtension(p []byte, nh byte, ext [8]byte) []byte {
	out := append(append(append([]byte(nil), p[:54]...), ext[:]...), p[54:]...)
	ip := out[14:54]
	ext0 := out[54:62]
	ext0[0] = ip[6] // the header after it: UDP
	ip[6] = nh
	binary.BigEndian.PutUint16(ip[4:], binary.BigEndian.Uint16(ip[4:])+8)
	return out
}

// pseudo is the UDP pseudo-header's sum for the IP header ip (IPv4 or
// IPv6, by its version).
func pseudo(ip []byte, udpLen int) uint32 {
	from, to := 12, 20
	if ip[0]>>4 == 6 {
		from, to = 8, 40
	}
	var sum uint32
	for i := from; i < to; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	return sum + 17 + uint32(udpLen)
}

// addrs are the source and destination of the datagram in frame p.
func addrs(p []byte) (src, dst netip.AddrPort) {
	ip := p[14:]
	if ip[0]>>4 == 6 {
		udp := p[54:]
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[8:24])), binary.BigEndian.Uint16(udp[0:])),
			netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip[24:40])), binary.BigEndian.Uint16(udp[2:]))
	}
	udp := p[34:]
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(udp[0:])),
		netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(udp[2:]))
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// srtData is an SRT data packet to dest of n payload bytes.
func srtData(dest uint32, n int) []byte {
	p := make([]byte, 16+n)
	binary.BigEndian.PutUint32(p[0:], 12345) // sequence number, bit 0 clear
	binary.BigEndian.PutUint32(p[12:], dest)
	for i := 16; i < len(p); i++ {
		p[i] = byte(i)
	}
	return p
}

// srtControl is an SRT control packet of type typ to dest.
func srtControl(typ uint16, dest uint32, n int) []byte {
	p := make([]byte, 16+n)
	binary.BigEndian.PutUint16(p[0:], 0x8000|typ)
	binary.BigEndian.PutUint32(p[12:], dest)
	return p
}

func run(t testing.TB, objs *srtpathObjects, in []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+256)
	ret, err := objs.SrtIngress.Run(&ebpf.RunOptions{Data: in, DataOut: out})
	if err != nil {
		t.Fatalf("running the program: %v", err)
	}
	return ret, out[:len(in)]
}

// checkRewritten checks that out is in readdressed from src to dst with
// the SRT destination socket dest and its checksums right (computed
// afresh: IPv4's header, and UDP's over the new pseudo-header).
func checkRewritten(t *testing.T, in, out []byte, src, dst netip.AddrPort, dest uint32) {
	t.Helper()
	u := udpOff(src)
	ip, udp := out[14:u], out[u:]
	if src.Addr().Is4() {
		if c := checksum(ip, 0); c != 0 {
			t.Errorf("IP header checksum does not verify (%#04x)", c)
		}
	} else if !bytes.Equal(ip[:8], in[14:22]) {
		t.Errorf("IPv6 header changed beyond its addresses")
	}
	if got := binary.BigEndian.Uint16(udp[6:]); got == 0 {
		t.Errorf("UDP checksum lost")
	} else if c := checksum(udp, pseudo(ip, len(udp))); c != 0 {
		t.Errorf("UDP checksum does not verify (%#04x)", c)
	}
	if gotSrc, gotDst := addrs(out); gotSrc != src || gotDst != dst {
		t.Errorf("readdressed %s -> %s, want %s -> %s", gotSrc, gotDst, src, dst)
	}
	if got := binary.BigEndian.Uint32(udp[8+12:]); got != dest {
		t.Errorf("destination socket %#x, want %#x", got, dest)
	}
	// Nothing else of the SRT packet changes.
	if !bytes.Equal(udp[8:8+12], in[u+8:u+8+12]) || !bytes.Equal(udp[8+16:], in[u+8+16:]) {
		t.Errorf("SRT packet changed beyond its destination socket")
	}
}

// TestSrtIngressForwards: data, keepalives and ACKACKs of a live flow are
// readdressed both ways, checksums right, the substitute ID rewritten
// towards the caller, and counted; over IPv4 and IPv6.
func TestSrtIngressForwards(t *testing.T) {
	objs := loadForTest(t)
	install(t, objs)
	for _, f := range tFlows {
		t.Run(f.name, func(t *testing.T) { testForwards(t, objs, f) })
	}
}

func testForwards(t *testing.T, objs *srtpathObjects, f tFlow) {
	upstreamID := uint32(0x55667788)
	wantBytes, wantPackets := uint64(0), uint64(0)
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"data", srtData(0, 1316)},
		{"odd-length data", srtData(0, 3)},
		{"keepalive", srtControl(1, 0, 4)},
		{"ackack", srtControl(6, 0, 4)},
		{"light ack", srtControl(2, 0, 4)},
		{"small ack", srtControl(2, 0, 16)},
		{"full ack", fullACK()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := append([]byte(nil), tc.payload...)
			binary.BigEndian.PutUint32(p[12:], upstreamID)
			in := packet(f.caller, f.listen, p, true)
			ret, out := run(t, objs, in)
			if ret != tcActRedirect {
				t.Fatalf("from the caller: verdict %d, want redirect", ret)
			}
			checkRewritten(t, in, out, f.upLocal, f.origin, upstreamID)

			binary.BigEndian.PutUint32(p[12:], tSubst)
			in = packet(f.origin, f.upLocal, p, true)
			ret, out = run(t, objs, in)
			if ret != tcActRedirect {
				t.Fatalf("from the origin: verdict %d, want redirect", ret)
			}
			checkRewritten(t, in, out, f.listen, f.caller, tCallerID)
		})
		wantBytes += uint64(len(tc.payload))
		wantPackets++
	}
	// IPv6 must have a UDP checksum: none is in TestSrtIngressLeaves.
	if f.caller.Addr().Is4() {
		wantBytes += 116
		wantPackets++
		t.Run("no UDP checksum", func(t *testing.T) {
			in := packet(f.caller, f.listen, srtData(upstreamID, 100), false)
			ret, out := run(t, objs, in)
			if ret != tcActRedirect {
				t.Fatalf("verdict %d, want redirect", ret)
			}
			if got := binary.BigEndian.Uint16(out[40:]); got != 0 {
				t.Errorf("UDP checksum %#04x, want 0 (none) kept", got)
			}
			if c := checksum(out[14:34], 0); c != 0 {
				t.Errorf("IP header checksum does not verify (%#04x)", c)
			}
		})
	}

	v := flowStats(t, objs, f.caller, f.listen)
	if v.Packets != wantPackets || v.Bytes != wantBytes || v.LastNs == 0 {
		t.Errorf("caller flow counted %d packets, %d bytes, last %d; want %d, %d, non-zero", v.Packets, v.Bytes, v.LastNs, wantPackets, wantBytes)
	}
	// The full ACK's figures, as wire.ParseACK reads them.
	want, _ := wire.ParseACK(fullACK())
	got := wire.ACK{RTT: v.AckRtt, RTTVar: v.AckRttVar, PacketRate: v.AckPacketRate, ByteRate: v.AckByteRate, Capacity: v.AckCapacity}
	if v.Acks != 1 || got != want {
		t.Errorf("caller flow kept ACK %+v (%d full ACKs), want %+v (1)", got, v.Acks, want)
	}
	if o := flowStats(t, objs, f.origin, f.upLocal); o.Packets != 7 || o.Acks != 1 {
		t.Errorf("origin flow counted %d packets, %d full ACKs; want 7, 1", o.Packets, o.Acks)
	}
}

// fullACK is a full ACK (seven words) with distinct figures.
func fullACK() []byte {
	p := srtControl(2, 0, 28)
	for i := range 7 {
		binary.BigEndian.PutUint32(p[16+4*i:], uint32(1000*(i+1)+i))
	}
	return p
}

// TestSrtIngressLeaves: what the program must leave to the stack comes
// back untouched with TC_ACT_UNSPEC.
func TestSrtIngressLeaves(t *testing.T) {
	objs := loadForTest(t)
	install(t, objs)
	// A live flow whose UDP header the fragment header below reads as,
	// the SRT header then being the real UDP header (a "data" packet):
	// only the next header check keeps it from being forwarded.
	ghost := netip.AddrPortFrom(tCaller6.Addr(), 0x1100)
	putFlow(t, objs, ghost, tListen6, tUpLocal6, tOrigin6, 7, 0, ebpf.UpdateNoExist)
	other := netip.MustParseAddrPort("192.0.2.11:40000")
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"handshake", packet(tCaller, tListen, srtControl(0, 0, 48), true)},
		{"shutdown", packet(tCaller, tListen, srtControl(5, 1, 4), true)},
		{"shutdown from the origin", packet(tOrigin, tUpLocal, srtControl(5, tSubst, 4), true)},
		{"ack of no libsrt shape", packet(tOrigin, tUpLocal, srtControl(2, tSubst, 8), true)},
		{"ack too long", packet(tOrigin, tUpLocal, srtControl(2, tSubst, 36), true)},
		{"nak", packet(tOrigin, tUpLocal, srtControl(3, tSubst, 8), true)},
		{"dropreq", packet(tCaller, tListen, srtControl(7, 1, 8), true)},
		{"km (user-defined)", packet(tCaller, tListen, srtControl(0x7fff, 1, 8), true)},
		{"another caller", packet(other, tListen, srtData(1, 100), true)},
		{"another port", packet(tCaller, netip.AddrPortFrom(tListen.Addr(), 10081), srtData(1, 100), true)},
		{"short SRT header", packet(tCaller, tListen, srtData(1, 0)[:15], true)},
		{"not IPv4", func() []byte {
			p := packet(tCaller, tListen, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[12:], 0x86dd)
			return p
		}()},
		{"IP options", func() []byte {
			p := packet(tCaller, tListen, srtData(1, 100), true)
			p[14] = 0x46
			return p
		}()},
		{"fragment", func() []byte {
			p := packet(tCaller, tListen, srtData(1, 100), true)
			p[14+6] = 0x20 // more fragments
			return p
		}()},
		{"UDP length lies long", func() []byte {
			p := packet(tCaller, tListen, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[38:], 8+16+101)
			return p
		}()},
		{"IP length lies long", func() []byte {
			p := packet(tCaller, tListen, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[16:], 20+8+116+1)
			return p
		}()},
		{"UDP length lies short", func() []byte {
			p := packet(tCaller, tListen, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[38:], 8+15)
			return p
		}()},

		// IPv6: the same, and what only IPv6 has.
		{"IPv6 handshake", packet(tCaller6, tListen6, srtControl(0, 0, 48), true)},
		{"IPv6 shutdown from the origin", packet(tOrigin6, tUpLocal6, srtControl(5, tSubst, 4), true)},
		{"IPv6 ack of no libsrt shape", packet(tOrigin6, tUpLocal6, srtControl(2, tSubst, 8), true)},
		{"IPv6 nak", packet(tOrigin6, tUpLocal6, srtControl(3, tSubst, 8), true)},
		{"IPv6 km (user-defined)", packet(tCaller6, tListen6, srtControl(0x7fff, 1, 8), true)},
		{"IPv6 another caller", packet(netip.MustParseAddrPort("[2001:db8:1::11]:40000"), tListen6, srtData(1, 100), true)},
		{"IPv6 the IPv4 caller's v4-mapped address", packet(netip.AddrPortFrom(netip.AddrFrom16(tCaller.Addr().As16()), tCaller.Port()),
			netip.AddrPortFrom(netip.AddrFrom16(tListen.Addr().As16()), tListen.Port()), srtData(1, 100), true)},
		{"IPv6 short SRT header", packet(tCaller6, tListen6, srtData(1, 0)[:15], true)},
		{"IPv6 short frame", packet(tCaller6, tListen6, srtData(1, 100), true)[:14+40+4]},
		{"IPv6 no UDP checksum", packet(tCaller6, tListen6, srtData(1, 100), false)},
		{"IPv6 ethertype IPv4", func() []byte {
			p := packet(tCaller6, tListen6, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[12:], 0x0800)
			return p
		}()},
		{"IPv6 version 4", func() []byte {
			p := packet(tCaller6, tListen6, srtData(1, 100), true)
			p[14] = 0x40
			return p
		}()},
		{"IPv6 hop-by-hop header", withExtension(packet(tCaller6, tListen6, srtData(1, 100), true), 0, [8]byte{0, 0, 1, 4})},
		{"IPv6 fragment header", withExtension(packet(tCaller6, tListen6, srtData(1, 100), true), 44, [8]byte{0, 0, 0, 1, 0, 0, 0, 7})},
		{"IPv6 fragment header that reads as a live flow's UDP header", withExtension(
			packet(netip.AddrPortFrom(tCaller6.Addr(), 5000), tListen6, srtData(1, 100), true),
			44, [8]byte{0, 0, 0x27, 0x60, 0, 8 + 8 + 116, 0x12, 0x34})},
		{"IPv6 both lengths lie long", func() []byte {
			p := packet(tCaller6, tListen6, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[18:], 8+116+4)
			binary.BigEndian.PutUint16(p[58:], 8+116+4)
			return p
		}()},
		{"IPv6 jumbo (payload length 0)", func() []byte {
			p := packet(tCaller6, tListen6, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[18:], 0)
			return p
		}()},
		{"IPv6 payload length lies long", func() []byte {
			p := packet(tCaller6, tListen6, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[18:], 8+116+1)
			return p
		}()},
		{"IPv6 payload length lies short", func() []byte {
			p := packet(tCaller6, tListen6, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[18:], 8+116-1)
			return p
		}()},
		{"IPv6 UDP length lies long", func() []byte {
			p := packet(tCaller6, tListen6, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[58:], 8+116+1)
			return p
		}()},
		{"IPv6 UDP length lies short", func() []byte {
			p := packet(tCaller6, tListen6, srtData(1, 100), true)
			binary.BigEndian.PutUint16(p[58:], 8+15)
			return p
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ret, out := run(t, objs, tc.in)
			if ret != tcActUnspec {
				t.Errorf("verdict %d, want TC_ACT_UNSPEC", ret)
			}
			if !bytes.Equal(out, tc.in) {
				t.Errorf("packet changed")
			}
		})
	}
}

// TestSrtIngressDeadline: the dead-man's switch. With a deadline that has
// passed (the proxy that kept it ahead is gone), a live flow's datagram
// goes on untouched to the stack; with none (0) or one still ahead it is
// forwarded. An expired deadline must not count the datagram either.
func TestSrtIngressDeadline(t *testing.T) {
	objs := loadForTest(t)
	install(t, objs)
	now := monotonic()
	for _, tc := range []struct {
		name     string
		deadline uint64
		want     uint32
	}{
		{"none", 0, tcActRedirect},
		{"ahead", now + uint64(time.Hour), tcActRedirect},
		{"passed", now - uint64(time.Second), tcActUnspec},
		{"long passed", 1, tcActUnspec},
		{"ahead again", monotonic() + uint64(time.Hour), tcActRedirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := objs.SrtDeadline.Put(uint32(0), tc.deadline); err != nil {
				t.Fatal(err)
			}
			before := [2]srtpathFlowStats{flowStats(t, objs, tCaller, tListen), flowStats(t, objs, tCaller6, tListen6)}
			for _, in := range [][]byte{
				packet(tCaller, tListen, srtData(1, 1316), true),
				packet(tOrigin, tUpLocal, srtControl(1, tSubst, 4), true),
				packet(tCaller6, tListen6, srtData(1, 1316), true),
				packet(tOrigin6, tUpLocal6, srtControl(1, tSubst, 4), true),
			} {
				ret, out := run(t, objs, in)
				if ret != tc.want {
					t.Fatalf("verdict %d, want %d", ret, tc.want)
				}
				if tc.want == tcActUnspec && !bytes.Equal(out, in) {
					t.Errorf("packet changed past the deadline")
				}
				if tc.want == tcActRedirect && bytes.Equal(out, in) {
					t.Errorf("forwarded unchanged")
				}
			}
			after := [2]srtpathFlowStats{flowStats(t, objs, tCaller, tListen), flowStats(t, objs, tCaller6, tListen6)}
			for i := range after {
				if counted := after[i].Packets - before[i].Packets; (tc.want == tcActRedirect) != (counted == 1) {
					t.Errorf("%s: counted %d packets, verdict %d", tFlows[i].name, counted, tc.want)
				}
			}
		})
	}
}

// FuzzSrtIngress: whatever arrives, the program either leaves it
// untouched for the stack or forwards a datagram of a live flow,
// readdressed with checksums that verify.
func FuzzSrtIngress(f *testing.F) {
	objs := loadForTest(f)
	install(f, objs)
	f.Add(packet(tCaller, tListen, srtData(1, 1316), true))
	f.Add(packet(tOrigin, tUpLocal, srtControl(6, tSubst, 4), true))
	f.Add(packet(tOrigin, tUpLocal, srtControl(2, tSubst, 28), false))
	f.Add(packet(tCaller, tListen, srtData(1, 0)[:15], true))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8, 0})
	f.Add(packet(tCaller6, tListen6, srtData(1, 1316), true))
	f.Add(packet(tOrigin6, tUpLocal6, srtControl(6, tSubst, 4), true))
	f.Add(packet(tOrigin6, tUpLocal6, fullACK(), true))
	f.Add(packet(tCaller6, tListen6, srtData(1, 0)[:15], true))
	f.Add(withExtension(packet(tCaller6, tListen6, srtData(1, 100), true), 44, [8]byte{}))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x86, 0xdd})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 4096 {
			return
		}
		out := make([]byte, len(in)+256)
		ret, err := objs.SrtIngress.Run(&ebpf.RunOptions{Data: in, DataOut: out})
		if err != nil {
			return // the kernel refused the input (too short for an skb)
		}
		out = out[:len(in)]
		switch ret {
		case tcActUnspec:
			if !bytes.Equal(out, in) {
				t.Fatalf("TC_ACT_UNSPEC but the packet changed")
			}
		case tcActRedirect:
			if binary.BigEndian.Uint16(in[12:]) == 0x86dd {
				// Only a fixed IPv6 header and a UDP checksum are
				// forwarded; one that verified still does.
				if len(in) < 54+8+16 || in[20] != 17 {
					t.Fatalf("forwarded an IPv6 datagram with next header %d", in[20])
				}
				udp := in[54:]
				if checksum(udp, pseudo(in[14:54], len(udp))) == 0 && checksum(out[54:], pseudo(out[14:54], len(udp))) != 0 {
					t.Fatalf("forwarded with a UDP checksum that no longer verifies")
				}
				if src, _ := addrs(out); src != tUpLocal6 && src != tListen6 {
					t.Fatalf("forwarded from %s, not the proxy", src)
				}
				return
			}
			if c := checksum(out[14:34], 0); c != 0 && checksum(in[14:34], 0) == 0 {
				t.Fatalf("forwarded with an IP checksum that no longer verifies")
			}
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(out[26:30])), binary.BigEndian.Uint16(out[34:]))
			if src != tUpLocal && src != tListen {
				t.Fatalf("forwarded from %s, not the proxy", src)
			}
		default:
			t.Fatalf("verdict %d", ret)
		}
	})
}

// BenchmarkSrtIngress is the program's cost per forwarded datagram with
// 10, 1,000 and 10,000 sessions' flows in its map: a hash lookup, so it
// should not grow with them. IPv6 beside 10,000 sessions' IPv6 flows: its
// own map, a 36-byte key, and the pseudo-header's difference over 32
// bytes.
func BenchmarkSrtIngress(b *testing.B) {
	v4 := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5000)
	}
	v6 := func(i int) netip.AddrPort {
		a := tCaller6.Addr().As16()
		a[12], a[13], a[14], a[15] = 1, byte(i>>16), byte(i>>8), byte(i) // not self
		return netip.AddrPortFrom(netip.AddrFrom16(a), 5000)
	}
	for _, sessions := range []int{10, 1000, 10000} {
		b.Run(strconv.Itoa(sessions)+"-sessions", func(b *testing.B) {
			benchIngress(b, tFlows[0], netip.MustParseAddrPort("192.0.2.99:5000"), sessions, v4)
		})
	}
	b.Run("ipv6-10000-sessions", func(b *testing.B) {
		benchIngress(b, tFlows[1], netip.MustParseAddrPort("[2001:db8:1::99]:5000"), 10000, v6)
	})
}

// benchIngress runs the program on a data packet from self, beside the
// flows of sessions-1 callers of f's family (caller(i) for the i-th).
func benchIngress(b *testing.B, f tFlow, self netip.AddrPort, sessions int, caller func(int) netip.AddrPort) {
	objs := loadForTest(b)
	// The kernel runs the program again and again on one skb: a flow
	// readdressed to itself is forwarded every time, with the work of
	// any other.
	putFlow(b, objs, self, f.listen, self, f.listen, 7, tCallerID, ebpf.UpdateNoExist)
	for i := 1; i < sessions; i++ {
		c := caller(i)
		origin := netip.AddrPortFrom(f.origin.Addr(), uint16(20000+i%40000))
		putFlow(b, objs, c, f.listen, f.upLocal, origin, 7, 0, ebpf.UpdateAny)
		putFlow(b, objs, origin, f.upLocal, f.listen, c, 5, 0, ebpf.UpdateAny)
	}
	in := packet(self, f.listen, srtData(1, 1316), true)
	out := make([]byte, len(in)+256)
	b.ResetTimer()
	ret, err := objs.SrtIngress.Run(&ebpf.RunOptions{Data: in, DataOut: out, Repeat: uint32(b.N)})
	if err != nil || ret != tcActRedirect {
		b.Fatalf("verdict %d, %v", ret, err)
	}
}
