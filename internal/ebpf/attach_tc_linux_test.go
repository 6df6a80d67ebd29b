package ebpf

// The tc attach mode in a network namespace of the test's own (on one
// locked thread: namespaces are per thread), two veth interfaces where
// the test flow's caller and origin routes lead: the clsact qdisc and the
// filter as the kernel lists them, what is not the proxy's left alone,
// a dead proxy's filter replaced, a live one's not, and the dead-man's
// goroutine gone with the program.

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread of its own in a new network namespace; the
// thread ends with it (never unlocked), and the namespace with the thread.
func inNetns(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		fn()
	}()
	<-done
}

// veth makes a veth pair, brings name up and gives it addr.
func veth(t *testing.T, name, addr string) netlink.Link {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(addr)
	if err := netlink.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l
}

func hasClsact(t *testing.T, l netlink.Link) bool {
	t.Helper()
	qs, err := netlink.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_CLSACT {
			return true
		}
	}
	return false
}

// bpfFilters lists the bpf filters at parent by name, with their program.
func bpfFilters(t *testing.T, l netlink.Link, parent uint32) map[string][]int {
	t.Helper()
	fs, err := netlink.FilterList(l, parent)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int{}
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Handle != 0 {
			out[bf.Name] = append(out[bf.Name], bf.Id)
		}
	}
	return out
}

// addFilter adds a filter of prog at parent, as another program would.
func addFilter(t *testing.T, l netlink.Link, parent uint32, prio uint16, handle uint32, name string, prog *ebpf.Program) {
	t.Helper()
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: parent, Handle: handle, Priority: prio, Protocol: unix.ETH_P_ALL},
		Fd:          prog.FD(), Name: name, DirectAction: true,
	}
	if err := netlink.FilterAdd(f); err != nil {
		t.Fatalf("adding %s: %v", name, err)
	}
}

// deadmanRunning reports whether the dead-man's goroutine is in the
// process's stacks.
func deadmanRunning() bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), "(*deadman).run")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func waitDeadmanGone(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); deadmanRunning(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the dead-man's goroutine outlived the loaded program")
		}
	}
}

// forceTC makes the next load decide again, in tc mode.
func forceTC(t *testing.T) {
	t.Helper()
	requirePrivileged(t)
	if err := Close(); err != nil {
		t.Fatal(err)
	}
	t.Setenv(AttachEnv, AttachTC)
	state.mu.Lock()
	state.mode, state.refused = "", nil
	state.mu.Unlock()
	t.Cleanup(func() {
		_ = Close()
		state.mu.Lock()
		state.mode = ""
		state.mu.Unlock()
	})
}

func testFlow() Flow {
	return Flow{Caller: tCaller, Listen: tListen, UpstreamLocal: tUpLocal, Origin: tOrigin}
}

// TestTCAttach: on an interface with no qdisc the proxy creates clsact
// and removes it with its filter at the last session; on one whose
// clsact came first, it removes only its filter, leaving the qdisc (bare,
// or with the filters of others at ingress and egress); a filter another
// program added to the proxy's clsact meanwhile keeps the qdisc there;
// the dead-man's goroutine runs while the program is loaded, not after.
func TestTCAttach(t *testing.T) {
	forceTC(t)
	other, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	inNetns(t, func() {
		// Here: the proxy's netlink sockets belong to this namespace.
		defer Close()
		toCaller := veth(t, "srtc", "192.0.2.1/24")
		toOrigin := veth(t, "srto", "198.51.100.1/24")
		// The origin side's clsact is someone else's, with no filter yet.
		if err := netlink.QdiscAdd(clsact(toOrigin)); err != nil {
			t.Fatal(err)
		}
		if deadmanRunning() {
			t.Fatal("a dead-man's goroutine before any load")
		}

		e, err := Install(testFlow())
		if err != nil {
			t.Fatalf("Install: %v", err)
		}
		if mode, why := Attach(); mode != AttachTC || !strings.Contains(why, AttachEnv) {
			t.Errorf("Attach() = %q, %q; want tc, for %s", mode, why, AttachEnv)
		}
		for _, l := range []netlink.Link{toCaller, toOrigin} {
			if !hasClsact(t, l) {
				t.Errorf("%s: no clsact qdisc", l.Attrs().Name)
			}
			if got := bpfFilters(t, l, netlink.HANDLE_MIN_INGRESS)[tcName]; len(got) != 1 {
				t.Errorf("%s: %d srt_ingress filters at ingress, want 1", l.Attrs().Name, len(got))
			}
		}
		if !deadmanRunning() {
			t.Errorf("no dead-man's goroutine in tc mode")
		}
		var d1, d2 uint64
		_ = state.objs.SrtDeadline.Lookup(uint32(0), &d1)
		time.Sleep(deadmanEvery + 200*time.Millisecond)
		_ = state.objs.SrtDeadline.Lookup(uint32(0), &d2)
		if now := monotonic(); d1 <= now-uint64(deadmanEvery) || d2 <= d1 || d2 <= now {
			t.Errorf("deadline %d then %d at %d: not kept ahead", d1, d2, now)
		}

		e.Remove()
		waitDeadmanGone(t)
		if hasClsact(t, toCaller) || len(bpfFilters(t, toCaller, netlink.HANDLE_MIN_INGRESS)) != 0 {
			t.Errorf("%s: the clsact qdisc or a filter the proxy made is left", toCaller.Attrs().Name)
		}
		if !hasClsact(t, toOrigin) || len(bpfFilters(t, toOrigin, netlink.HANDLE_MIN_INGRESS)) != 0 {
			t.Fatalf("%s: the clsact qdisc the proxy found there is gone, or the proxy's filter is left", toOrigin.Attrs().Name)
		}

		// Their filters on their clsact stay; a filter someone adds to the
		// proxy's clsact keeps it there.
		addFilter(t, toOrigin, netlink.HANDLE_MIN_INGRESS, 7, 1, "theirs_in", other)
		addFilter(t, toOrigin, netlink.HANDLE_MIN_EGRESS, 7, 1, "theirs_out", other)
		if e, err = Install(testFlow()); err != nil {
			t.Fatalf("Install: %v", err)
		}
		addFilter(t, toCaller, netlink.HANDLE_MIN_EGRESS, 7, 1, "theirs_out", other)
		e.Remove()
		in, out := bpfFilters(t, toOrigin, netlink.HANDLE_MIN_INGRESS), bpfFilters(t, toOrigin, netlink.HANDLE_MIN_EGRESS)
		if !hasClsact(t, toOrigin) || len(in) != 1 || len(in["theirs_in"]) != 1 || len(out) != 1 || len(out["theirs_out"]) != 1 {
			t.Errorf("%s: filters %v at ingress, %v at egress; want their clsact and theirs only", toOrigin.Attrs().Name, in, out)
		}
		if !hasClsact(t, toCaller) || len(bpfFilters(t, toCaller, netlink.HANDLE_MIN_EGRESS)["theirs_out"]) != 1 {
			t.Errorf("%s: the proxy removed its clsact with another's filter on it", toCaller.Attrs().Name)
		}
		if n := len(bpfFilters(t, toCaller, netlink.HANDLE_MIN_INGRESS)); n != 0 {
			t.Errorf("%s: %d ingress filters left", toCaller.Attrs().Name, n)
		}
	})
}

// TestTCStale: a filter of ours whose proxy is gone (its deadline past)
// is replaced, not doubled; one whose deadline is still ahead (another
// proxy, running) is left alone and the interface not used; a filter in
// our place that no longer runs our program is not deleted at detach.
func TestTCStale(t *testing.T) {
	forceTC(t)
	dead := loadForTest(t)
	if err := dead.SrtDeadline.Put(uint32(0), uint64(1)); err != nil {
		t.Fatal(err)
	}
	deadInfo, _ := dead.SrtIngress.Info()
	deadID, _ := deadInfo.ID()
	inNetns(t, func() {
		// Here: the proxy's netlink sockets belong to this namespace.
		defer Close()
		toCaller := veth(t, "srtc", "192.0.2.1/24")
		veth(t, "srto", "198.51.100.1/24")
		if err := netlink.QdiscAdd(clsact(toCaller)); err != nil {
			t.Fatal(err)
		}
		addFilter(t, toCaller, netlink.HANDLE_MIN_INGRESS, tcPriority, tcHandle, tcName, dead.SrtIngress)

		e, err := Install(testFlow())
		if err != nil {
			t.Fatalf("Install beside a dead proxy's filter: %v", err)
		}
		got := bpfFilters(t, toCaller, netlink.HANDLE_MIN_INGRESS)[tcName]
		state.mu.Lock()
		info, _ := state.objs.SrtIngress.Info()
		state.mu.Unlock()
		ours, _ := info.ID()
		if len(got) != 1 || got[0] != int(ours) {
			t.Errorf("srt_ingress filters run programs %v; want ours (%d) alone, not the dead one's (%d)", got, ours, deadID)
		}
		e.Remove()
		if n := len(bpfFilters(t, toCaller, netlink.HANDLE_MIN_INGRESS)); n != 0 {
			t.Errorf("%d ingress filters left", n)
		}

		// Ours replaced meanwhile (by another proxy that could not tell we
		// were alive): not ours to delete any more.
		if e, err = Install(testFlow()); err != nil {
			t.Fatal(err)
		}
		if err := netlink.FilterReplace(&netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: toCaller.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS, Handle: tcHandle, Priority: tcPriority, Protocol: unix.ETH_P_ALL},
			Fd:          dead.SrtIngress.FD(), Name: tcName, DirectAction: true,
		}); err != nil {
			t.Fatal(err)
		}
		e.Remove()
		if got := bpfFilters(t, toCaller, netlink.HANDLE_MIN_INGRESS)[tcName]; len(got) != 1 || got[0] != int(deadID) {
			t.Errorf("srt_ingress filters run programs %v; want the other proxy's (%d) kept", got, deadID)
		}
		if err := netlink.FilterDel(&netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: toCaller.Attrs().Index, Parent: netlink.HANDLE_MIN_INGRESS, Handle: tcHandle, Priority: tcPriority, Protocol: unix.ETH_P_ALL}, Fd: -1}); err != nil {
			t.Fatal(err)
		}

		// Another proxy, alive: its deadline ahead.
		if err := dead.SrtDeadline.Put(uint32(0), monotonic()+uint64(time.Hour)); err != nil {
			t.Fatal(err)
		}
		addFilter(t, toCaller, netlink.HANDLE_MIN_INGRESS, tcPriority, tcHandle, tcName, dead.SrtIngress)
		if e, err = Install(testFlow()); err == nil {
			e.Remove()
			t.Fatalf("Install took the place of a running proxy's filter")
		} else if errors.Is(err, ErrRefused) {
			t.Errorf("a running proxy's filter on one interface refused the path to the process: %v", err)
		}
		if got := bpfFilters(t, toCaller, netlink.HANDLE_MIN_INGRESS)[tcName]; len(got) != 1 || got[0] != int(deadID) {
			t.Errorf("srt_ingress filters run programs %v; want the running proxy's (%d)", got, deadID)
		}
	})
}
