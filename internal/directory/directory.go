// Package directory remembers where live streams are: which upstream each
// live publisher of a stream key reached, so that the stream's players (and
// a second publisher) go there too, whatever the fleet has become since.
//
// The process keeps one Table, shared by every configuration so that a
// reload forgets nothing, as the session registry is. A Store shares what
// several proxy instances know (see Redis); without one the table alone
// decides.
package directory

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Key is a stream key: host and resource.
type Key struct {
	Host     string `json:"host,omitempty"`
	Resource string `json:"resource"`
}

// Entry is one instance's record of a live stream.
type Entry struct {
	Key
	// Upstream is where the newest live publisher went; "" while every
	// publisher of the stream is still in its handshake.
	Upstream   string    `json:"upstream"`
	Instance   string    `json:"instance"`
	Publishers int       `json:"publishers"`
	Players    int       `json:"players"`
	Since      time.Time `json:"since"` // when the newest publisher was established
}

// Store shares entries between proxy instances. Every call is bounded in
// time by its context.
type Store interface {
	// Find returns every live entry of key, this instance's included.
	Find(ctx context.Context, key Key) ([]Entry, error)
	// Claim records e for this instance unless another instance has a
	// live entry of e.Key; it reports whether it did, atomically.
	Claim(ctx context.Context, e Entry) (bool, error)
	// Put writes this instance's entries; Delete removes its entry of a key.
	Put(ctx context.Context, es []Entry) error
	Delete(ctx context.Context, key Key) error
	// List returns every live entry.
	List(ctx context.Context) ([]Entry, error)
}

// Instance names this process among the proxies sharing a store: host
// name, process ID and a random part, so two processes on one host, or a
// restarted one, never share it.
var Instance = func() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}()

// Table is this process's record of its live streams.
type Table struct {
	instance string
	mu       sync.Mutex
	streams  map[Key]*stream
	seq      uint64
	// mirror, when set, is told of every change, to share it.
	mirror atomic.Pointer[Mirror]
}

type stream struct {
	pubs    []*Publisher
	players int
}

// Publisher is one publishing session's place in the table, from before
// its upstream handshake to its end.
type Publisher struct {
	t        *Table
	key      Key
	seq      uint64
	upstream string
	since    time.Time
	ended    bool
}

var process = NewTable(Instance)

// Process returns the process-wide table.
func Process() *Table { return process }

// NewTable returns an empty table of the named instance (tests run
// several instances in one process).
func NewTable(instance string) *Table {
	return &Table{instance: instance, streams: map[Key]*stream{}}
}

// Newest returns this process's entry of key: where its newest live
// publisher went.
func (t *Table) Newest(key Key) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.entryLocked(key)
}

func (t *Table) entryLocked(key Key) (Entry, bool) {
	s := t.streams[key]
	if s == nil || len(s.pubs) == 0 {
		return Entry{}, false
	}
	e := Entry{Key: key, Instance: t.instance, Publishers: len(s.pubs), Players: s.players}
	for _, p := range s.pubs {
		if p.upstream != "" && !p.since.Before(e.Since) {
			e.Upstream, e.Since = p.upstream, p.since
		}
	}
	return e, true
}

// Entries returns every stream of this process with a publisher or a player.
func (t *Table) Entries() []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry, 0, len(t.streams))
	for k, s := range t.streams {
		e, ok := t.entryLocked(k)
		if !ok {
			e = Entry{Key: k, Instance: t.instance, Players: s.players}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return compareKeys(a.Key, b.Key) })
	return out
}

// published returns the entries with a publisher, for a store.
func (t *Table) published() []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry, 0, len(t.streams))
	for k := range t.streams {
		if e, ok := t.entryLocked(k); ok {
			out = append(out, e)
		}
	}
	return out
}

// Busy reports whether key has a publisher here, live or in its handshake.
func (t *Table) Busy(key Key) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[key]
	return s != nil && len(s.pubs) > 0
}

// Publish adds a publisher of key that has not reached an upstream yet;
// with exclusive, only when key has no other publisher here.
func (t *Table) Publish(key Key, exclusive bool) (*Publisher, bool) {
	t.mu.Lock()
	s := t.streams[key]
	if s == nil {
		s = &stream{}
		t.streams[key] = s
	}
	if exclusive && len(s.pubs) > 0 {
		t.mu.Unlock()
		return nil, false
	}
	t.seq++
	p := &Publisher{t: t, key: key, seq: t.seq}
	s.pubs = append(s.pubs, p)
	t.mu.Unlock()
	t.changed(key)
	return p, true
}

// Established records the upstream the publisher reached.
func (p *Publisher) Established(upstream string, now time.Time) {
	p.t.mu.Lock()
	if p.ended {
		p.t.mu.Unlock()
		return
	}
	p.upstream, p.since = upstream, now
	p.t.mu.Unlock()
	p.t.changed(p.key)
}

// End removes the publisher; a second call does nothing.
func (p *Publisher) End() {
	t := p.t
	t.mu.Lock()
	if p.ended {
		t.mu.Unlock()
		return
	}
	p.ended = true
	if s := t.streams[p.key]; s != nil {
		s.pubs = slices.DeleteFunc(s.pubs, func(q *Publisher) bool { return q == p })
		t.forgetLocked(p.key, s)
	}
	t.mu.Unlock()
	t.changed(p.key)
}

// Play counts a player of key until the returned func is called.
func (t *Table) Play(key Key) (end func()) {
	t.mu.Lock()
	s := t.streams[key]
	if s == nil {
		s = &stream{}
		t.streams[key] = s
	}
	s.players++
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			if s := t.streams[key]; s != nil {
				s.players--
				t.forgetLocked(key, s)
			}
			t.mu.Unlock()
		})
	}
}

func (t *Table) forgetLocked(key Key, s *stream) {
	if len(s.pubs) == 0 && s.players <= 0 {
		delete(t.streams, key)
	}
}

func (t *Table) changed(key Key) {
	if m := t.mirror.Load(); m != nil {
		m.dirty(key)
	}
}

func compareKeys(a, b Key) int {
	return cmp.Or(strings.Compare(a.Host, b.Host), strings.Compare(a.Resource, b.Resource))
}

// Newest returns the newest entry that names an upstream.
func Newest(es []Entry) (Entry, bool) {
	var best Entry
	found := false
	for _, e := range es {
		if e.Upstream != "" && (!found || e.Since.After(best.Since)) {
			best, found = e, true
		}
	}
	return best, found
}

// Mirror returns the store the table is shared through, nil when none.
func (t *Table) Mirror() *Mirror { return t.mirror.Load() }
