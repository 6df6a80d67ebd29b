package ebpf

import (
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
		state.entries = snapshotFrom
	}
	state.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Close() })
	objs := state.objs
	install(t, objs)
	e := &Entry{keys: [2]srtpathFlowKey{keyOf(tCaller, tListen), keyOf(tOrigin, tUpLocal)}, gen: state.gen}

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
	snapshotted := !state.snapAt.IsZero() && len(state.snap) == 2
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
