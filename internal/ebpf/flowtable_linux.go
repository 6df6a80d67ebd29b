package ebpf

import (
	"errors"
	"time"

	"github.com/cilium/ebpf"
)

// flowTable is one address family's map of flows (srt_flows for IPv4,
// srt_flows6 for IPv6) and its last batched read. The families have maps
// of their own so that an IPv4 datagram's lookup hashes the same 12-byte
// key as before IPv6 came.
type flowTable[K comparable, V any] struct {
	m *ebpf.Map
	// entries counts the sessions with flows in m: from snapshotFrom on,
	// counts come from one batched read of the whole map.
	entries int
	// snap is the map as last read whole, at snapAt; snapErr is why the
	// kernel would not read it in batches.
	snap      map[K]V
	snapAt    time.Time
	snapErr   error
	batchKeys []K
	batchVals []V
}

// insert puts both directions' entries in the map, or neither.
func (t *flowTable[K, V]) insert(keys [2]K, vals [2]V) error {
	for i := range keys {
		if err := t.m.Update(&keys[i], &vals[i], ebpf.UpdateNoExist); err != nil {
			if i == 1 {
				_ = t.m.Delete(&keys[0])
			}
			return err
		}
	}
	t.entries++
	return nil
}

// remove takes both directions' entries out of the map.
func (t *flowTable[K, V]) remove(keys [2]K) {
	for i := range keys {
		_ = t.m.Delete(&keys[i])
	}
	t.entries--
}

// read returns k's value from the snapshot, or from the map itself when
// fresh, when there are too few sessions for a snapshot to pay, or when
// it cannot be taken.
func (t *flowTable[K, V]) read(k K, fresh bool) (V, bool) {
	if !fresh {
		fresh = t.entries < snapshotFrom || !t.snapshot()
	}
	if fresh {
		var v V
		err := t.m.Lookup(&k, &v)
		return v, err == nil
	}
	v, ok := t.snap[k]
	return v, ok
}

// snapshot makes sure t.snap is recent, reading the map in batches. It
// reports false if the kernel refuses batch reads.
func (t *flowTable[K, V]) snapshot() bool {
	if t.snapErr != nil {
		return false
	}
	if t.snap != nil && !t.snapAt.IsZero() && time.Since(t.snapAt) < snapshotMaxAge {
		return true
	}
	// Reused: at rest the refresh allocates nothing.
	if t.snap == nil {
		t.snap = make(map[K]V, 2*t.entries)
		t.batchKeys = make([]K, 1024)
		t.batchVals = make([]V, 1024)
	}
	clear(t.snap)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := t.m.BatchLookup(&cursor, t.batchKeys, t.batchVals, nil)
		for i := range n {
			t.snap[t.batchKeys[i]] = t.batchVals[i]
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			t.snapErr = err
			t.snapAt = time.Time{}
			return false
		}
	}
	t.snapAt = time.Now()
	return true
}
