package directory_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/srtroute/caddy-l4-srt/internal/directory"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

const testTTL = 900 * time.Millisecond

// instance is one proxy instance as the directory sees it: its table,
// mirrored into a shared Redis under its own ID.
type instance struct {
	table  *directory.Table
	mirror *directory.Mirror
	store  *directory.Redis
	logs   *observer.ObservedLogs
	errors atomic.Int64
}

func newInstance(t *testing.T, addr, id string) *instance {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	in := &instance{table: directory.NewTable(id), logs: logs}
	in.store = directory.NewRedis(directory.RedisOptions{Addr: addr, Prefix: "test:", TTL: testTTL,
		Timeout: 200 * time.Millisecond, Instance: id})
	in.mirror = directory.StartMirror(in.table, in.store, testTTL, 200*time.Millisecond, zap.New(core), func() { in.errors.Add(1) })
	t.Cleanup(func() { in.stop() })
	return in
}

var stopped sync.Map

// stop ends the instance without deleting anything, as a crash would.
func (in *instance) stop() {
	if _, done := stopped.LoadOrStore(in, true); !done {
		in.mirror.Stop()
		in.store.Close()
	}
}

func (in *instance) publish(t *testing.T, key directory.Key, upstream string) *directory.Publisher {
	t.Helper()
	p, ok := in.table.Publish(key, false)
	if !ok {
		t.Fatal("publish refused")
	}
	p.Established(upstream, time.Now())
	return p
}

// where returns the upstream of key's newest live publisher as in sees it
// through the store, "" when there is none.
func (in *instance) where(key directory.Key) string {
	es, err := in.mirror.Find(key)
	if err != nil {
		return "error: " + err.Error()
	}
	e, _ := directory.Newest(es)
	return e.Upstream
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
	}
}

func TestRedisInstancesShareStreams(t *testing.T) {
	r := testpeer.StartRedis(t)
	a, b := newInstance(t, r.Addr, "a"), newInstance(t, r.Addr, "b")
	key := directory.Key{Host: "h:1", Resource: "live/x:y"}
	pa := a.publish(t, key, "10.0.0.1:1")
	eventually(t, time.Second, "b sees a's publisher", func() bool { return b.where(key) == "10.0.0.1:1" })
	// Players follow the newest live entry.
	time.Sleep(2 * time.Millisecond)
	pb := b.publish(t, key, "10.0.0.2:1")
	eventually(t, time.Second, "a sees b's newer publisher", func() bool { return a.where(key) == "10.0.0.2:1" })
	pb.End()
	eventually(t, time.Second, "b's entry deleted, a's left", func() bool { return a.where(key) == "10.0.0.1:1" })
	pa.End()
	eventually(t, time.Second, "no entry left", func() bool { return b.where(key) == "" })
	// Other streams never saw any of it.
	if got := b.where(directory.Key{Resource: "live/x"}); got != "" {
		t.Errorf("another stream's entry: %q", got)
	}
}

// Of many instances claiming one stream at once, exactly one wins; the
// loser may claim once the winner's entry is gone.
func TestRedisClaimIsAtomic(t *testing.T) {
	r := testpeer.StartRedis(t)
	const n = 8
	ins := make([]*instance, n)
	for i := range ins {
		ins[i] = newInstance(t, r.Addr, fmt.Sprint("i", i))
	}
	key := directory.Key{Resource: "live/claimed"}
	var wins atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := in.mirror.Claim(directory.Entry{Key: key, Publishers: 1})
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d instances claimed the stream", wins.Load())
	}
}

// Redis killed: calls fail within the timeout, once logged; restarted
// empty: every live entry is back within one refresh, once logged.
func TestRedisOutageAndEmptyRestart(t *testing.T) {
	r := testpeer.StartRedis(t)
	a, b := newInstance(t, r.Addr, "a"), newInstance(t, r.Addr, "b")
	key := directory.Key{Resource: "live/across"}
	a.publish(t, key, "10.0.0.1:1")
	eventually(t, time.Second, "b sees a's publisher", func() bool { return b.where(key) == "10.0.0.1:1" })

	r.Kill()
	for range 5 {
		start := time.Now()
		if _, err := b.mirror.Find(key); err == nil {
			t.Fatal("find without redis succeeded")
		}
		// Bounded by the timeout, never by the OS's connect timeout.
		if d := time.Since(start); d > time.Second {
			t.Fatalf("a call to a dead redis took %v", d)
		}
	}
	time.Sleep(testTTL / 2) // a refresh or so fails too
	r.Start()
	eventually(t, testTTL/3+time.Second, "a's entry back in the restarted redis", func() bool { return b.where(key) == "10.0.0.1:1" })
	for _, in := range []*instance{a, b} {
		warns := in.logs.FilterLevelExact(zapcore.WarnLevel).Len()
		infos := in.logs.FilterMessage("stream directory store reachable again").Len()
		if warns != 1 || infos != 1 {
			t.Errorf("one outage: %d Warn and %d recovery lines, want 1 and 1: %v", warns, infos, in.logs.All())
		}
		if in.errors.Load() == 0 {
			t.Error("no store error counted")
		}
	}
}

// An instance that dies without a word leaves nothing past the TTL.
func TestRedisDeadInstanceExpires(t *testing.T) {
	r := testpeer.StartRedis(t)
	a, b := newInstance(t, r.Addr, "a"), newInstance(t, r.Addr, "b")
	key := directory.Key{Resource: "live/orphan"}
	a.publish(t, key, "10.0.0.1:1")
	eventually(t, time.Second, "b sees a's publisher", func() bool { return b.where(key) == "10.0.0.1:1" })
	a.stop()
	start := time.Now()
	eventually(t, 2*testTTL, "a's entry expired", func() bool { return b.where(key) == "" })
	if d := time.Since(start); d > testTTL+200*time.Millisecond {
		t.Errorf("a's entry outlived it by %v (ttl %v)", d, testTTL)
	}
	if es, err := b.mirror.List(); err != nil || len(es) != 0 {
		t.Errorf("List after expiry: %v, %v", es, err)
	}
}
