package session

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrExists reports a caller address that already has a live session.
var ErrExists = errors.New("session: caller address already has a live session")

// Key identifies a session by what the kernel sees of its caller: the
// listener address the caller dialled and the caller's own address. The
// same caller address may hold sessions on two listeners (libsrt
// multiplexes several connections on one local port); they must never
// cross.
type Key struct {
	Listener, Caller netip.AddrPort
}

// KeyOf is the key of a caller at remote that dialled the listener at
// local. IPv4 addresses on a dual-stack socket appear as IPv4-mapped
// IPv6, and key the same as on an IPv4 socket.
func KeyOf(local, remote net.Addr) (Key, bool) {
	c, ok := CallerKey(remote)
	if !ok {
		return Key{}, false
	}
	l, _ := CallerKey(local)
	return Key{Listener: l, Caller: c}, true
}

// Registry holds the live sessions of a process, keyed by Key.
// It belongs to no configuration: sessions outlive the handler instances
// that started them, which is what lets a stream flow through a reload.
type Registry struct {
	mu       sync.RWMutex
	byCaller map[Key]*Session
	// bySource counts the live sessions per source (source.go).
	bySource map[netip.Addr]int
	// ended remembers recently ended sessions, so that a caller still
	// sending to one can be told so instead of being ignored.
	ended     map[Key]tombstone
	lastSweep time.Time
	// done sums the traffic of the sessions that have ended.
	done Totals
}

// Totals counts relayed traffic.
type Totals struct {
	FromCaller, FromCallerBytes, FromUpstream, FromUpstreamBytes uint64
}

func (t *Totals) add(st Stats) {
	t.FromCaller += st.FromCaller
	t.FromCallerBytes += st.FromCallerBytes
	t.FromUpstream += st.FromUpstream
	t.FromUpstreamBytes += st.FromUpstreamBytes
}

// Totals returns the traffic relayed by every session so far, live or
// ended, and the number of live sessions. It never goes back.
func (r *Registry) Totals() (Totals, int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t := r.done
	for _, s := range r.byCaller {
		t.add(s.Stats())
	}
	return t, len(r.byCaller)
}

type tombstone struct {
	socket uint32
	until  time.Time
}

// TombstoneTTL is how long an ended session's caller address is
// remembered: longer than SRT's default peer idle timeout (5 s), after
// which a caller that missed the SHUTDOWN gives up by itself.
const TombstoneTTL = 10 * time.Second

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{byCaller: make(map[Key]*Session), bySource: make(map[netip.Addr]int), ended: make(map[Key]tombstone)}
}

// Default is the process-wide registry.
var Default = NewRegistry()

// add registers s under its key.
func (r *Registry) add(s *Session) error {
	k := s.Key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byCaller[k]; ok {
		return ErrExists
	}
	r.byCaller[k] = s
	delete(r.ended, k)
	r.bySource[SourceOf(s.Caller.Addr())]++
	return nil
}

// remove drops s, which has ended, folding its traffic into the totals and
// leaving a tombstone.
func (r *Registry) remove(s *Session) {
	now := time.Now()
	k := s.Key()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byCaller[k] == s {
		delete(r.byCaller, k)
		src := SourceOf(s.Caller.Addr())
		if r.bySource[src]--; r.bySource[src] <= 0 {
			delete(r.bySource, src)
		}
		r.done.add(s.Stats())
	}
	r.ended[k] = tombstone{socket: s.CallerSocket, until: now.Add(TombstoneTTL)}
	if now.Sub(r.lastSweep) >= TombstoneTTL {
		r.lastSweep = now
		for a, t := range r.ended {
			if now.After(t.until) {
				delete(r.ended, a)
			}
		}
	}
}

// Ended reports whether the caller k had a session that ended within the
// last TombstoneTTL, and the caller's socket ID in it.
func (r *Registry) Ended(k Key) (socket uint32, ok bool) {
	r.mu.RLock()
	t, found := r.ended[k]
	r.mu.RUnlock()
	if !found || time.Now().After(t.until) {
		return 0, false
	}
	return t.socket, true
}

// Lookup returns the live session of the caller k, or nil.
func (r *Registry) Lookup(k Key) *Session {
	r.mu.RLock()
	s := r.byCaller[k]
	r.mu.RUnlock()
	return s
}

// ByID returns the live session with the given ID, or nil.
func (r *Registry) ByID(id string) *Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.byCaller {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// Len is the number of live sessions.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byCaller)
}

// Sessions returns a snapshot of the live sessions.
func (r *Registry) Sessions() []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Session, 0, len(r.byCaller))
	for _, s := range r.byCaller {
		out = append(out, s)
	}
	return out
}

// Stray is a datagram a new session socket received before it was
// connected to its caller (see DialFrom).
type Stray struct {
	From netip.AddrPort
	Data []byte
}

// CallerKey is the registry key of a caller address: IPv4 callers of a
// dual-stack listener appear as IPv4-mapped IPv6, and must key the same as
// on an IPv4 listener.
func CallerKey(a net.Addr) (netip.AddrPort, bool) {
	u, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := u.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
