package directory

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Mirror shares the process table through a Store: every change is written
// at once (in the background), and every entry is rewritten each ttl/3, so
// that entries outlive no dead instance by more than their TTL and a store
// that lost them (restarted empty) has them back within one refresh.
//
// While the store fails, callers are placed from the table alone: one Warn
// line when it is lost, one Info line when it is back.
type Mirror struct {
	t       *Table
	store   Store
	ttl     time.Duration
	timeout time.Duration
	log     *zap.Logger
	// onError is called for each failed store call (a metric).
	onError func()

	down    atomic.Bool
	mu      sync.Mutex
	pending map[Key]struct{}
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// StartMirror starts sharing t through s, each call bounded by timeout.
// The newest mirror of a table is the one its changes go to.
func StartMirror(t *Table, s Store, ttl, timeout time.Duration, log *zap.Logger, onError func()) *Mirror {
	m := &Mirror{t: t, store: s, ttl: ttl, timeout: timeout, log: log, onError: onError,
		pending: map[Key]struct{}{}, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	t.mirror.Store(m)
	go m.loop()
	return m
}

// Stop ends the mirror's work; what it wrote expires with its TTL.
func (m *Mirror) Stop() {
	m.t.mirror.CompareAndSwap(m, nil)
	close(m.stop)
	<-m.done
}

func (m *Mirror) dirty(key Key) {
	m.mu.Lock()
	m.pending[key] = struct{}{}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Mirror) loop() {
	defer close(m.done)
	tick := time.NewTicker(max(m.ttl/3, 10*time.Millisecond))
	defer tick.Stop()
	m.refresh()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
			m.refresh()
		case <-m.wake:
			m.flush()
		}
	}
}

// flush writes the keys that changed.
func (m *Mirror) flush() {
	m.mu.Lock()
	keys := m.pending
	m.pending = map[Key]struct{}{}
	m.mu.Unlock()
	var put []Entry
	for k := range keys {
		if e, ok := m.t.Newest(k); ok {
			put = append(put, e)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
		err := m.store.Delete(ctx, k)
		cancel()
		if !m.result(err) {
			// Not deleted: it expires with its TTL.
			continue
		}
	}
	if len(put) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
		m.result(m.store.Put(ctx, put))
		cancel()
	}
}

// refresh rewrites every entry of this process with its TTL.
func (m *Mirror) refresh() {
	es := m.t.published()
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	if len(es) == 0 {
		// Still find out whether the store is back.
		_, err := m.store.Find(ctx, Key{Resource: "\x00ping"})
		m.result(err)
		return
	}
	m.result(m.store.Put(ctx, es))
}

// result notes a store call's outcome, logging once per outage.
func (m *Mirror) result(err error) bool {
	if err != nil {
		if m.onError != nil {
			m.onError()
		}
		if m.down.CompareAndSwap(false, true) {
			m.log.Warn("stream directory store unreachable; placing streams from this instance's own sessions until it is back", zap.Error(err))
		}
		return false
	}
	if m.down.CompareAndSwap(true, false) {
		m.log.Info("stream directory store reachable again")
		// What changed meanwhile was not written: write it all.
		m.dirtyAll()
	}
	return true
}

func (m *Mirror) dirtyAll() {
	for _, e := range m.t.published() {
		m.dirty(e.Key)
	}
}

// Find returns the live entries of key from the store.
func (m *Mirror) Find(key Key) ([]Entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	es, err := m.store.Find(ctx, key)
	m.result(err)
	return es, err
}

// Claim claims key for this instance in the store.
func (m *Mirror) Claim(e Entry) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	ok, err := m.store.Claim(ctx, e)
	m.result(err)
	return ok, err
}

// List returns every live entry in the store.
func (m *Mirror) List() ([]Entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*m.timeout)
	defer cancel()
	es, err := m.store.List(ctx)
	m.result(err)
	return es, err
}

// shared holds the process's mirrors by their options, so that a reload
// with the same store keeps the same mirror (and its connections).
var shared = struct {
	sync.Mutex
	m map[RedisOptions]*sharedMirror
}{m: map[RedisOptions]*sharedMirror{}}

type sharedMirror struct {
	m     *Mirror
	r     *Redis
	users int
}

// AcquireRedis returns the process's mirror of its table into the Redis
// store o names, starting it if needed, and makes it the table's mirror.
// release stops it once its last user is gone.
func AcquireRedis(o RedisOptions, log *zap.Logger, onError func()) (*Mirror, func()) {
	shared.Lock()
	defer shared.Unlock()
	s := shared.m[o]
	if s == nil {
		r := NewRedis(o)
		s = &sharedMirror{r: r, m: StartMirror(process, r, o.TTL, o.Timeout, log, onError)}
		shared.m[o] = s
	} else {
		// The newest configuration's store is the one changes go to.
		process.mirror.Store(s.m)
		s.m.dirtyAll()
	}
	s.users++
	var once sync.Once
	return s.m, func() {
		once.Do(func() {
			shared.Lock()
			defer shared.Unlock()
			if s.users--; s.users > 0 {
				return
			}
			delete(shared.m, o)
			s.m.Stop()
			_ = s.r.Close()
		})
	}
}
