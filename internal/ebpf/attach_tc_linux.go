package ebpf

// The attach mode below Linux 6.6 (or where CADDY_L4_SRT_EBPF_ATTACH=tc):
// the program as a direct-action cls_bpf filter at ingress of a clsact
// qdisc, set up through netlink as `tc` would. Unlike a TCX link, a filter
// outlives the process that added it: the proxy removes exactly its own on
// detach, removes a clsact qdisc only if it created it and nothing else
// uses it, and a killed proxy's filter is made inert by the program's
// dead-man's switch (deadman_linux.go).

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The filter's priority and handle ("SR", "T"), with its name, are how
// the proxy tells its own filter from anyone else's, a dead proxy's
// included.
const (
	tcPriority = 0x5352
	tcHandle   = 0x54
	tcName     = "srt_ingress"
)

// tcFilter is the program attached to one interface by a filter of ours.
type tcFilter struct {
	// nl talks to the namespace the filter was added in, whichever
	// thread closes it.
	nl      *netlink.Handle
	ifindex int
	// prog is the program's ID, which the kernel reports for a filter:
	// what is deleted at detach must still run our program.
	prog ebpf.ProgramID
	// madeQdisc: the interface had no clsact (or ingress) qdisc before.
	madeQdisc bool
}

// attachTC adds our filter at ingress of ifindex, creating a clsact
// qdisc if the interface has none, and replacing a filter a dead proxy
// left in our place.
func attachTC(ifindex int, prog *ebpf.Program) (*tcFilter, error) {
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return nil, errors.New("program info: the kernel gives no program ID")
	}
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	lnk, err := nl.LinkByIndex(ifindex)
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("interface %d: %w", ifindex, err)
	}
	f := &tcFilter{nl: nl, ifindex: ifindex, prog: id}
	if f.madeQdisc, err = ensureClsact(nl, lnk); err != nil {
		nl.Close()
		return nil, err
	}
	stale, err := ourSlot(nl, lnk)
	if err == nil {
		nf := f.filter()
		nf.Fd = prog.FD()
		nf.Name = tcName
		nf.DirectAction = true
		// Replace (not add) where a dead proxy's filter holds our place:
		// never two of ours, and no moment with none of ours.
		if stale {
			err = nl.FilterReplace(nf)
		} else {
			err = nl.FilterAdd(nf)
		}
		if err != nil {
			err = fmt.Errorf("adding the cls_bpf filter (pref %d handle %#x) at ingress of %s: %w", tcPriority, tcHandle, lnk.Attrs().Name, err)
		}
	}
	if err != nil {
		if f.madeQdisc {
			_ = dropClsactIfUnused(nl, lnk)
		}
		nl.Close()
		return nil, err
	}
	return f, nil
}

// ensureClsact makes sure the interface has a qdisc ingress filters hang
// from, and reports whether it had to create one.
func ensureClsact(nl *netlink.Handle, lnk netlink.Link) (made bool, err error) {
	qs, err := nl.QdiscList(lnk)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return false, fmt.Errorf("qdiscs of %s: %w", lnk.Attrs().Name, err)
	}
	for _, q := range qs {
		// clsact or the older ingress qdisc: both take ingress filters.
		if q.Attrs().Parent == netlink.HANDLE_CLSACT {
			return false, nil
		}
	}
	err = nl.QdiscAdd(clsact(lnk))
	if errors.Is(err, unix.EEXIST) {
		return false, nil // someone else's, added just now
	}
	if err != nil {
		return false, fmt.Errorf("adding a clsact qdisc to %s: %w", lnk.Attrs().Name, err)
	}
	return true, nil
}

func clsact(lnk netlink.Link) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: lnk.Attrs().Index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
}

// ourSlot looks at what holds our priority and handle at ingress: nothing
// (false), a filter of ours whose proxy is gone (true, to be replaced), or
// anything else, which is not ours to touch (an error).
func ourSlot(nl *netlink.Handle, lnk netlink.Link) (stale bool, err error) {
	fs, err := filters(nl, lnk, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		return false, err
	}
	for _, f := range fs {
		a := f.Attrs()
		// Handle 0 is the priority's own entry in the dump, not a filter.
		if a.Priority != tcPriority || a.Handle == 0 {
			continue
		}
		bf, ok := f.(*netlink.BpfFilter)
		if !ok || bf.Name != tcName || a.Handle != tcHandle {
			return false, fmt.Errorf("ingress of %s: another filter holds pref %d, the proxy's", lnk.Attrs().Name, tcPriority)
		}
		if deadlineAhead(bf.Id) {
			return false, fmt.Errorf("ingress of %s: the srt_ingress filter of another running proxy (program %d) is there", lnk.Attrs().Name, bf.Id)
		}
		return true, nil
	}
	return false, nil
}

// deadlineAhead reports whether program id's dead-man's switch is still
// held ahead: another proxy, alive, uses that filter. Reading another
// process's program takes CAP_SYS_ADMIN; without it the filter is taken
// for a dead proxy's (see docs/ebpf.md).
func deadlineAhead(id int) bool {
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return false
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return false
	}
	ids, _ := info.MapIDs()
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			continue
		}
		mi, err := m.Info()
		var d uint64
		if err == nil && mi.Name == "srt_deadline" && m.Lookup(uint32(0), &d) == nil {
			m.Close()
			return d == 0 || d > monotonic()
		}
		m.Close()
	}
	return false
}

func filters(nl *netlink.Handle, lnk netlink.Link, parent uint32) ([]netlink.Filter, error) {
	fs, err := nl.FilterList(lnk, parent)
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		fs, err = nl.FilterList(lnk, parent)
	}
	if err != nil {
		return nil, fmt.Errorf("filters of %s: %w", lnk.Attrs().Name, err)
	}
	return fs, nil
}

// filter is our filter's identity, as netlink addresses it.
func (f *tcFilter) filter() *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: f.ifindex,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    tcHandle,
			Priority:  tcPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd: -1,
	}
}

// Close deletes our filter, if it is still there running our program,
// and the clsact qdisc if we created it and no filter is left on it.
func (f *tcFilter) Close() error {
	defer f.nl.Close()
	lnk, err := f.nl.LinkByIndex(f.ifindex)
	if err != nil {
		// The interface is gone, and its qdisc and filters with it.
		return nil
	}
	fs, err := filters(f.nl, lnk, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		return err
	}
	var errs []error
	for _, x := range fs {
		bf, ok := x.(*netlink.BpfFilter)
		if ok && bf.Priority == tcPriority && bf.Handle == tcHandle && ebpf.ProgramID(bf.Id) == f.prog {
			if err := f.nl.FilterDel(f.filter()); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("deleting the srt_ingress filter of %s: %w", lnk.Attrs().Name, err))
			}
		}
	}
	if f.madeQdisc {
		errs = append(errs, dropClsactIfUnused(f.nl, lnk))
	}
	return errors.Join(errs...)
}

// dropClsactIfUnused deletes the clsact qdisc (one the proxy created)
// unless a filter remains at its ingress or egress.
func dropClsactIfUnused(nl *netlink.Handle, lnk netlink.Link) error {
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := filters(nl, lnk, parent)
		if err != nil {
			return err
		}
		if len(fs) > 0 {
			return nil
		}
	}
	if err := nl.QdiscDel(clsact(lnk)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("deleting the clsact qdisc of %s: %w", lnk.Attrs().Name, err)
	}
	return nil
}
