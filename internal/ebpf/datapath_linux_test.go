package ebpf

import (
	"net/netip"
	"testing"
	"time"
)

// TestCountsSnapshot: with many sessions, counts come from one batched
// read of the map, and are the program's; Remove reads them fresh.
func TestCountsSnapshot(t *testing.T) {
	requirePrivileged(t)
	state.mu.Lock()
	err := loadLocked()
	if err == nil {
		// As if that many sessions were offloaded: what makes Counts read
		// the map whole.
		state.flows4.entries = snapshotFrom
	}
	state.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Close() })
	objs := state.objs
	install(t, objs)
	e := &Entry{keys4: [2]srtpathFlowKey{keyOf(tCaller, tListen), keyOf(tOrigin, tUpLocal)}, gen: state.gen}

	for range 3 {
		if ret, _ := run(t, objs, packet(tCaller, tListen, srtData(1, 100), true)); ret != tcActRedirect {
			t.Fatalf("verdict %d", ret)
		}
	}
	if ret, _ := run(t, objs, packet(tOrigin, tUpLocal, fullACK(), true)); ret != tcActRedirect {
		t.Fatalf("verdict %d", ret)
	}
	fc, fo := e.Counts()
	state.mu.Lock()
	snapshotted := !state.flows4.snapAt.IsZero() && len(state.flows4.snap) == 2
	state.mu.Unlock()
	if !snapshotted {
		t.Errorf("counts were not read from a snapshot of the map")
	}
	if fc.Packets != 3 || fc.Bytes != 3*116 || fo.Packets != 1 || !fo.HaveACK || fc.HaveACK {
		t.Errorf("counts %+v / %+v; want 3 packets, %d bytes / 1 full ACK", fc, fo, 3*116)
	}
	if since := time.Since(fc.Last); since < 0 || since > time.Minute {
		t.Errorf("last packet %v ago", since)
	}

	if ret, _ := run(t, objs, packet(tCaller, tListen, srtData(1, 100), true)); ret != tcActRedirect {
		t.Fatalf("verdict %d", ret)
	}
	fc, _ = e.Remove()
	if fc.Packets != 4 {
		t.Errorf("Remove read %d packets from the caller, want 4 (fresh, not the snapshot)", fc.Packets)
	}
}

// TestFlowFamily: a flow is offloaded when its four addresses are of one
// family, v4-mapped ones counting as IPv4 (a dual-stack socket's); a
// mixed one, or one with an IPv6 link-local address, is refused.
func TestFlowFamily(t *testing.T) {
	mapped := func(ap netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	linkLocal := netip.MustParseAddrPort("[fe80::1]:10080")
	for _, tc := range []struct {
		name   string
		f      Flow
		v6, ok bool
	}{
		{"IPv4", Flow{tCaller, tListen, tUpLocal, tOrigin, 0}, false, true},
		{"IPv4 on a dual-stack listener", Flow{mapped(tCaller), mapped(tListen), tUpLocal, tOrigin, 0}, false, true},
		{"IPv6", Flow{tCaller6, tListen6, tUpLocal6, tOrigin6, 0}, true, true},
		{"IPv6 caller, IPv4 origin", Flow{tCaller6, tListen6, tUpLocal, tOrigin, 0}, false, false},
		{"IPv4 caller, IPv6 origin", Flow{mapped(tCaller), mapped(tListen), tUpLocal6, tOrigin6, 0}, false, false},
		{"link-local listener", Flow{tCaller6, linkLocal, tUpLocal6, tOrigin6, 0}, false, false},
		{"link-local origin", Flow{tCaller6, tListen6, tUpLocal6, linkLocal, 0}, false, false},
		{"no origin", Flow{tCaller, tListen, tUpLocal, netip.AddrPort{}, 0}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v6, err := tc.f.family()
			if (err == nil) != tc.ok || v6 != tc.v6 {
				t.Errorf("family: v6 %v, %v; want v6 %v, offloaded %v", v6, err, tc.v6, tc.ok)
			}
		})
	}
}

// TestCountsIPv6: an IPv6 entry's counts come from srt_flows6, by lookup
// and from a snapshot of that map alone.
func TestCountsIPv6(t *testing.T) {
	requirePrivileged(t)
	state.mu.Lock()
	err := loadLocked()
	state.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Close() })
	objs := state.objs
	install(t, objs)
	e := &Entry{v6: true, keys6: [2]srtpathFlowKey6{keyOf6(tCaller6, tListen6), keyOf6(tOrigin6, tUpLocal6)}, gen: state.gen}
	for range 3 {
		if ret, _ := run(t, objs, packet(tCaller6, tListen6, srtData(1, 100), true)); ret != tcActRedirect {
			t.Fatalf("verdict %d", ret)
		}
	}
	if ret, _ := run(t, objs, packet(tOrigin6, tUpLocal6, fullACK(), true)); ret != tcActRedirect {
		t.Fatalf("verdict %d", ret)
	}
	for _, snapshot := range []bool{false, true} {
		state.mu.Lock()
		if snapshot {
			state.flows6.entries = snapshotFrom
		}
		fc, fo := e.countsLocked(false)
		snapshotted := len(state.flows6.snap) == 2 && state.flows4.snap == nil
		state.mu.Unlock()
		if snapshotted != snapshot {
			t.Errorf("snapshot of srt_flows6 alone taken: %v, want %v", snapshotted, snapshot)
		}
		if fc.Packets != 3 || fc.Bytes != 3*116 || fo.Packets != 1 || !fo.HaveACK || fc.HaveACK {
			t.Errorf("counts %+v / %+v; want 3 packets, %d bytes / 1 full ACK", fc, fo, 3*116)
		}
	}
}
