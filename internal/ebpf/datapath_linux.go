package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// ErrRefused wraps what keeps the program from loading or attaching at
// all (no CAP_BPF/CAP_NET_ADMIN, a kernel before 5.10): no session of the
// process can take the path. Other Install errors concern one flow.
var ErrRefused = errors.New("ebpf data path refused")

// AttachEnv forces how the program is attached: "tcx" (links, Linux 6.6)
// or "tc" (a cls_bpf filter of a clsact qdisc), for tests and for hosts
// whose tooling does not get on with TCX. Unset: tcx where the kernel has
// it, else tc.
const AttachEnv = "CADDY_L4_SRT_EBPF_ATTACH"

// The attach modes.
const (
	AttachTCX = "tcx"
	AttachTC  = "tc"
)

// Flow is an established session as the program sees it.
type Flow struct {
	// Caller is the caller's address; Listen the proxy address it
	// dialled (the session socket's local address).
	Caller, Listen netip.AddrPort
	// UpstreamLocal is the local address of the session's socket
	// connected to Origin.
	UpstreamLocal, Origin netip.AddrPort
	// RewriteSocket, when non-zero, becomes the destination socket ID of
	// every datagram from the origin (the substitute-ID readdressing of
	// the relay).
	RewriteSocket uint32
}

// Counts is one direction of a flow as the program forwarded it.
type Counts struct {
	Packets, Bytes uint64
	// Last is when the program last forwarded a datagram; zero if never.
	Last time.Time
	// ACK holds the figures of the last full ACK the program forwarded,
	// if HaveACK.
	ACK     wire.ACK
	HaveACK bool
}

// Entry is a flow installed in the program's map. Remove it when the
// session ends.
type Entry struct {
	// From the caller, from the origin: keys4 for an IPv4 flow, keys6
	// (v6) for an IPv6 one.
	keys4  [2]srtpathFlowKey
	keys6  [2]srtpathFlowKey6
	v6     bool
	ifaces [2]int // where each comes in
	gen    uint64
	once   sync.Once
}

// state is the process's: one program, one map, one attachment (TCX link
// or tc filter) per interface in use, whatever the number of sessions and
// configurations.
var state struct {
	mu      sync.Mutex
	refused error // sticky: a load that failed fails again
	// mode is how the program is attached (AttachTCX, AttachTC), and why;
	// decided at the first load, for the process: the kernel does not
	// change under it.
	mode, modeWhy string
	objs          *srtpathObjects
	gen           uint64 // counts loads, so a stale Entry cannot touch a newer map
	links         map[int]*ifaceLink
	// deadman keeps the program's deadline ahead while a tc filter may
	// be attached; nil in TCX mode.
	deadman *deadman
	// flows4 and flows6 count the offloaded sessions of each family.
	flows4 *flowTable[srtpathFlowKey, srtpathFlowVal]
	flows6 *flowTable[srtpathFlowKey6, srtpathFlowVal6]
}

type ifaceLink struct {
	l    io.Closer // a TCX link or our tc filter
	refs int
}

// Install puts f in the program's map, loading the program and
// attaching it where f's datagrams come in as needed. An error wrapping
// ErrRefused means the path is unavailable to the whole process.
func Install(f Flow) (*Entry, error) {
	v6, err := f.family()
	if err != nil {
		return nil, err
	}
	// Each direction leaves where the other comes in (symmetric routing);
	// where it does not, its datagrams simply reach the sockets.
	toCaller, err := egressInterface(f.Caller.Addr().Unmap())
	if err != nil {
		return nil, err
	}
	toOrigin, err := egressInterface(f.Origin.Addr().Unmap())
	if err != nil {
		return nil, err
	}
	e := &Entry{v6: v6, ifaces: [2]int{toCaller.Index, toOrigin.Index}}

	state.mu.Lock()
	defer state.mu.Unlock()
	if err := loadLocked(); err != nil {
		return nil, err
	}
	e.gen = state.gen
	attached := 0
	undo := func() {
		for _, ifi := range e.ifaces[:attached] {
			detachLocked(ifi)
		}
		e.removeLocked()
		unloadIfIdleLocked()
	}
	if v6 {
		e.keys6 = [2]srtpathFlowKey6{keyOf6(f.Caller, f.Listen), keyOf6(f.Origin, f.UpstreamLocal)}
		err = state.flows6.insert(e.keys6, [2]srtpathFlowVal6{
			valOf6(f.UpstreamLocal, f.Origin, toOrigin.Index, 0),
			valOf6(f.Listen, f.Caller, toCaller.Index, f.RewriteSocket),
		})
	} else {
		e.keys4 = [2]srtpathFlowKey{keyOf(f.Caller, f.Listen), keyOf(f.Origin, f.UpstreamLocal)}
		err = state.flows4.insert(e.keys4, [2]srtpathFlowVal{
			valOf(f.UpstreamLocal, f.Origin, toOrigin.Index, 0),
			valOf(f.Listen, f.Caller, toCaller.Index, f.RewriteSocket),
		})
	}
	if err != nil {
		unloadIfIdleLocked()
		return nil, fmt.Errorf("flow %s: map entry: %w", f.Caller, err)
	}
	for _, ifi := range e.ifaces {
		if err := attachLocked(ifi); err != nil {
			undo()
			return nil, err
		}
		attached++
	}
	return e, nil
}

// family says whether f is an IPv6 flow (else IPv4): its four addresses
// must be of one family, v4-mapped IPv6 ones (a dual-stack socket's)
// counting as IPv4. A datagram cannot be turned from one family into the
// other by substituting addresses, so mixed flows stay with the relay.
// IPv6 link-local addresses need their interface (zone) at every step,
// which the flow map and the route query do not carry: not offloaded.
func (f Flow) family() (v6 bool, err error) {
	aps := [4]netip.AddrPort{f.Caller, f.Listen, f.UpstreamLocal, f.Origin}
	v6 = !aps[0].Addr().Unmap().Is4()
	for _, ap := range aps {
		a := ap.Addr().Unmap()
		if !a.IsValid() || a.Is4() == v6 {
			return false, fmt.Errorf("flow %s: caller %s, listener %s, upstream socket %s and origin %s not all of one address family: not offloaded",
				f.Caller, f.Caller, f.Listen, f.UpstreamLocal, f.Origin)
		}
		if a.Is6() && (a.IsLinkLocalUnicast() || a.Zone() != "") {
			return false, fmt.Errorf("flow %s: link-local address %s: not offloaded", f.Caller, a)
		}
	}
	return v6, nil
}

// removeLocked takes e's entries out of its family's map.
func (e *Entry) removeLocked() {
	if e.v6 {
		state.flows6.remove(e.keys6)
	} else {
		state.flows4.remove(e.keys4)
	}
}

// Counts reads what the program forwarded from the caller and from the
// origin, as of at most snapshotMaxAge ago.
func (e *Entry) Counts() (fromCaller, fromOrigin Counts) {
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.objs == nil || state.gen != e.gen {
		return Counts{}, Counts{}
	}
	return e.countsLocked(false)
}

// countsLocked reads the entry's counts from its map's snapshot, or
// from the map itself when fresh or when the snapshot cannot be taken.
func (e *Entry) countsLocked(fresh bool) (fromCaller, fromOrigin Counts) {
	var st [2]srtpathFlowStats
	var ok [2]bool
	for i := range 2 {
		if e.v6 {
			var v srtpathFlowVal6
			v, ok[i] = state.flows6.read(e.keys6[i], fresh)
			st[i] = v.St
		} else {
			var v srtpathFlowVal
			v, ok[i] = state.flows4.read(e.keys4[i], fresh)
			st[i] = v.St
		}
	}
	mono := monotonic()
	now := time.Now()
	var c [2]Counts
	for i, v := range st {
		if !ok[i] {
			continue
		}
		c[i] = Counts{Packets: v.Packets, Bytes: v.Bytes, HaveACK: v.Acks != 0,
			ACK: wire.ACK{RTT: v.AckRtt, RTTVar: v.AckRttVar, PacketRate: v.AckPacketRate,
				ByteRate: v.AckByteRate, Capacity: v.AckCapacity}}
		if v.LastNs != 0 {
			c[i].Last = now.Add(-time.Duration(mono - v.LastNs))
		}
	}
	return c[0], c[1]
}

// snapshotMaxAge is how stale the counts of a flow may be: each session's
// idle check and the admin API read them, and one batched read of the
// whole map serves them all, rather than a lookup per session and check
// (which grew with the number of sessions).
const snapshotMaxAge = 250 * time.Millisecond

// snapshotFrom is the number of sessions (of one family) from which a
// batched read of the whole map beats a lookup per session and check: the
// kernel walks every bucket of the map (max_entries) whatever the number
// of entries, about as long as a few hundred single lookups.
const snapshotFrom = 256

// Remove takes the flow out of the map and returns its final counts: its
// datagrams go to the session's sockets again. When it was the process's
// last flow, the program is detached everywhere and unloaded.
func (e *Entry) Remove() (fromCaller, fromOrigin Counts) {
	e.once.Do(func() {
		state.mu.Lock()
		defer state.mu.Unlock()
		if state.objs == nil || state.gen != e.gen {
			return // Close came first
		}
		fromCaller, fromOrigin = e.countsLocked(true)
		e.removeLocked()
		for _, ifi := range e.ifaces {
			detachLocked(ifi)
		}
		unloadIfIdleLocked()
	})
	return fromCaller, fromOrigin
}

// Close detaches the program from every interface and unloads it and its
// map, whatever flows remain: their datagrams reach the sessions' sockets
// from then on, so live sessions go on, relayed in user space. For the
// process's exit; a later Install loads it again.
func Close() error {
	state.mu.Lock()
	defer state.mu.Unlock()
	return closeLocked()
}

// Attach says how the program is attached (AttachTCX or AttachTC) and
// why; empty before the first load.
func Attach() (mode, why string) {
	state.mu.Lock()
	defer state.mu.Unlock()
	return state.mode, state.modeWhy
}

// Attached lists the interfaces the program is attached to, by index.
func Attached() []int {
	state.mu.Lock()
	defer state.mu.Unlock()
	var out []int
	for ifi := range state.links {
		out = append(out, ifi)
	}
	return out
}

func loadLocked() error {
	if state.refused != nil {
		return state.refused
	}
	if state.objs != nil {
		return nil
	}
	// bpf_redirect_neigh: the verifier of an older kernel rejects the
	// program anyway, this says why.
	if !KernelAtLeast(5, 10) {
		state.refused = fmt.Errorf("%w: the program needs Linux 5.10 or later (bpf_redirect_neigh)", ErrRefused)
		return state.refused
	}
	mode, why, forced, err := chooseAttach()
	if err != nil {
		state.refused = fmt.Errorf("%w: %w", ErrRefused, err)
		return state.refused
	}
	objs := new(srtpathObjects)
	if err := loadSrtpathObjects(objs, nil); err != nil {
		state.refused = fmt.Errorf("%w: loading the program: %w", ErrRefused, err)
		return state.refused
	}
	if state.mode == "" {
		if mode == AttachTCX && !forced && !haveTCX(objs.SrtIngress) {
			mode, why = AttachTC, "the kernel does not support TCX links"
		}
		state.mode, state.modeWhy = mode, why
	}
	state.objs = objs
	state.flows4 = &flowTable[srtpathFlowKey, srtpathFlowVal]{m: objs.SrtFlows}
	state.flows6 = &flowTable[srtpathFlowKey6, srtpathFlowVal6]{m: objs.SrtFlows6}
	state.gen++
	state.links = make(map[int]*ifaceLink)
	return nil
}

func attachLocked(ifindex int) error {
	if il := state.links[ifindex]; il != nil {
		il.refs++
		return nil
	}
	var l io.Closer
	var err error
	if state.mode == AttachTC {
		l, err = attachTCLocked(ifindex)
	} else {
		l, err = link.AttachTCX(link.TCXOptions{
			Interface: ifindex,
			Program:   state.objs.SrtIngress,
			Attach:    ebpf.AttachTCXIngress,
		})
		if err != nil {
			err = fmt.Errorf("%w: attaching to interface %d (TCX ingress, Linux 6.6 or later): %w", ErrRefused, ifindex, err)
			// No capability, no TCX: no interface will do better.
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, ebpf.ErrNotSupported) {
				state.refused = err
			}
		}
	}
	if err != nil {
		return err
	}
	state.links[ifindex] = &ifaceLink{l: l, refs: 1}
	return nil
}

// attachTCLocked attaches the program to ifindex by a tc filter, the
// dead-man's switch running first: a filter outlives the process.
func attachTCLocked(ifindex int) (io.Closer, error) {
	if state.deadman == nil {
		d, err := startDeadman(state.objs.SrtDeadline)
		if err != nil {
			return nil, fmt.Errorf("attaching to interface %d (tc): %w", ifindex, err)
		}
		state.deadman = d
	}
	f, err := attachTC(ifindex, state.objs.SrtIngress)
	if err != nil {
		err = fmt.Errorf("attaching to interface %d (tc: clsact qdisc, cls_bpf filter): %w", ifindex, err)
		// No capability, no clsact or cls_bpf in this kernel: no interface
		// will do better. Anything else (another's filter in our place)
		// is this interface's.
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
			err = fmt.Errorf("%w: %w", ErrRefused, err)
			state.refused = err
		}
		return nil, err
	}
	return f, nil
}

// chooseAttach decides the attach mode: AttachEnv's, else TCX from
// Linux 6.6 on, else tc. forced is AttachEnv's say.
func chooseAttach() (mode, why string, forced bool, err error) {
	switch v := os.Getenv(AttachEnv); v {
	case AttachTCX, AttachTC:
		return v, AttachEnv + "=" + v, true, nil
	case "":
	default:
		return "", "", false, fmt.Errorf("%s=%q: want %q or %q", AttachEnv, v, AttachTCX, AttachTC)
	}
	if KernelAtLeast(6, 6) {
		return AttachTCX, "Linux 6.6 or later", false, nil
	}
	return AttachTC, "Linux before 6.6: no TCX links", false, nil
}

// haveTCX tries a TCX link to an interface that cannot exist: a kernel
// with TCX answers "no such device"; one without, not supported. Without
// CAP_NET_ADMIN the library cannot tell and says "not supported" too:
// that stays a refusal at the first attach (EPERM), not a switch to tc.
func haveTCX(prog *ebpf.Program) bool {
	l, err := link.AttachTCX(link.TCXOptions{Interface: math.MaxInt32, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		_ = l.Close()
		return true
	}
	return !errors.Is(err, ebpf.ErrNotSupported) || !haveNetAdmin()
}

// haveNetAdmin reports whether the process holds CAP_NET_ADMIN; true
// when it cannot tell (the attach will).
func haveNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return true
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}

func detachLocked(ifindex int) {
	il := state.links[ifindex]
	if il == nil {
		return
	}
	if il.refs--; il.refs == 0 {
		_ = il.l.Close()
		delete(state.links, ifindex)
	}
}

// sessionsLocked counts the offloaded sessions, of both families.
func sessionsLocked() int {
	if state.objs == nil {
		return 0
	}
	return state.flows4.entries + state.flows6.entries
}

func unloadIfIdleLocked() {
	if sessionsLocked() == 0 && len(state.links) == 0 {
		_ = closeLocked()
	}
}

func closeLocked() error {
	if state.objs == nil {
		return nil
	}
	var errs []error
	for ifi, il := range state.links {
		errs = append(errs, il.l.Close())
		delete(state.links, ifi)
	}
	if state.deadman != nil {
		errs = append(errs, state.deadman.stopAndExpire())
		state.deadman = nil
	}
	errs = append(errs, state.objs.Close())
	state.objs = nil
	state.flows4, state.flows6 = nil, nil
	return errors.Join(errs...)
}

func keyOf(src, dst netip.AddrPort) srtpathFlowKey {
	return srtpathFlowKey{Saddr: be32(src.Addr()), Daddr: be32(dst.Addr()), Sport: be16(src.Port()), Dport: be16(dst.Port())}
}

func valOf(src, dst netip.AddrPort, ifindex int, rewrite uint32) srtpathFlowVal {
	return srtpathFlowVal{Saddr: be32(src.Addr()), Daddr: be32(dst.Addr()), Sport: be16(src.Port()), Dport: be16(dst.Port()),
		Ifindex: uint32(ifindex), RewriteDstSocket: beID(rewrite)}
}

func keyOf6(src, dst netip.AddrPort) srtpathFlowKey6 {
	return srtpathFlowKey6{Saddr: src.Addr().As16(), Daddr: dst.Addr().As16(), Sport: be16(src.Port()), Dport: be16(dst.Port())}
}

func valOf6(src, dst netip.AddrPort, ifindex int, rewrite uint32) srtpathFlowVal6 {
	return srtpathFlowVal6{Saddr: src.Addr().As16(), Daddr: dst.Addr().As16(), Sport: be16(src.Port()), Dport: be16(dst.Port()),
		Ifindex: uint32(ifindex), RewriteDstSocket: beID(rewrite)}
}

// beID is an SRT socket ID as the program writes it: network order in
// memory.
func beID(id uint32) uint32 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], id)
	return binary.NativeEndian.Uint32(b[:])
}

// be32 and be16 give the value whose in-memory bytes are the address or
// port in network order, as the program compares them.
func be32(a netip.Addr) uint32 {
	b := a.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
}

func be16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func monotonic() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

var probe struct {
	once sync.Once
	err  error
}

// Probe reports, once per process, whether the path can work here: the
// program loads (CAP_BPF, Linux 5.10 or later, a verifier that takes it);
// Attach then says how it will be attached. It keeps nothing loaded.
func Probe() error {
	probe.once.Do(func() {
		state.mu.Lock()
		defer state.mu.Unlock()
		if err := loadLocked(); err != nil {
			probe.err = err
			return
		}
		unloadIfIdleLocked()
	})
	return probe.err
}

// KernelAtLeast reports whether the running kernel's release is at least
// major.minor.
func KernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return releaseAtLeast(unix.ByteSliceToString(u.Release[:]), major, minor)
}

// releaseAtLeast compares a release string ("6.1.0-18-amd64") with
// major.minor.
func releaseAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
