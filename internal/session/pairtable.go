package session

// pairTable finds a reactor's sessions by the key epoll reports with
// each event. Keys index a slice and are reused once freed, so an event
// costs an index, not a map lookup. Key 0 is never given out: it is the
// reactor's eventfd's (wakeKey).
type pairTable struct {
	slots []*relayPair // nil where free; slots[0] always
	free  []uint32
	n     int
}

// put stores p under a free key and returns the key.
func (t *pairTable) put(p *relayPair) uint32 {
	t.n++
	if k := len(t.free); k > 0 {
		key := t.free[k-1]
		t.free = t.free[:k-1]
		t.slots[key] = p
		return key
	}
	if len(t.slots) == 0 {
		t.slots = append(t.slots, nil)
	}
	t.slots = append(t.slots, p)
	return uint32(len(t.slots) - 1)
}

// get returns the pair under key, or nil.
func (t *pairTable) get(key uint32) *relayPair {
	if int(key) < len(t.slots) {
		return t.slots[key]
	}
	return nil
}

// drop frees key.
func (t *pairTable) drop(key uint32) {
	if t.get(key) == nil {
		return
	}
	t.slots[key] = nil
	t.free = append(t.free, key)
	t.n--
}
