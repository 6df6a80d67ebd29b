package srthandler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Health defaults.
const (
	DefaultHealthTimeout = time.Second
	DefaultHealthPasses  = 2
	DefaultHealthFails   = 2
	DefaultMaxFails      = 1
	DefaultFailDuration  = 10 * time.Second
)

// upstreamState is what the process knows about one upstream address. It
// is shared by every route and every configuration that names the
// address, so a reload neither resets a dead upstream to healthy nor
// forgets its sessions.
type upstreamState struct {
	addr     string
	sessions atomic.Int64 // live sessions, handshakes in progress included
	// dynamic states come from placeholder upstreams: any caller can make
	// new ones, so they are forgotten when idle and kept out of metrics.
	dynamic bool

	mu         sync.Mutex
	activeDown bool // the active checks' verdict
	passes     int  // consecutive successful probes while down
	fails      int  // consecutive failed probes while up
	failures   []time.Time
	downUntil  time.Time // passive verdict
	watchers   int
	stopProbe  context.CancelFunc
	probe      probeConfig
}

var upstreamStates sync.Map // host:port → *upstreamState

// stateOf returns the state of a configured (static) upstream address.
func stateOf(addr string) *upstreamState {
	if s, ok := upstreamStates.Load(addr); ok {
		return s.(*upstreamState)
	}
	s, _ := upstreamStates.LoadOrStore(addr, &upstreamState{addr: addr})
	return s.(*upstreamState)
}

// maxDynamicStates bounds the states kept for placeholder upstreams.
const maxDynamicStates = 4096

var dynamicStates atomic.Int64

// dynamicStateOf returns the state of an upstream address that came from
// a placeholder. Past maxDynamicStates new ones are not kept at all.
func dynamicStateOf(addr string) *upstreamState {
	if s, ok := upstreamStates.Load(addr); ok {
		return s.(*upstreamState)
	}
	fresh := &upstreamState{addr: addr, dynamic: true}
	if dynamicStates.Load() >= maxDynamicStates {
		return fresh
	}
	s, loaded := upstreamStates.LoadOrStore(addr, fresh)
	if !loaded {
		dynamicStates.Add(1)
	}
	return s.(*upstreamState)
}

// acquire counts a session (or a handshake in progress) on u.
func (u *upstreamState) acquire() { u.sessions.Add(1) }

// release gives a session count back; an idle, healthy dynamic state is
// forgotten.
func (u *upstreamState) release() {
	if u.sessions.Add(-1) > 0 || !u.dynamic || !u.healthy(time.Now()) {
		return
	}
	if upstreamStates.CompareAndDelete(u.addr, u) {
		dynamicStates.Add(-1)
	}
}

// healthy reports whether new callers may be sent to u.
func (u *upstreamState) healthy(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !u.activeDown && !now.Before(u.downUntil)
}

// passivePolicy is the handler's passive health configuration.
type passivePolicy struct {
	maxFails     int
	failDuration time.Duration
}

// recordFailure counts a failed handshake; maxFails of them within
// failDuration mark u down for failDuration. It reports whether this
// failure marked it down.
func (u *upstreamState) recordFailure(now time.Time, p passivePolicy) bool {
	if p.failDuration <= 0 || p.maxFails <= 0 {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	keep := u.failures[:0]
	for _, t := range u.failures {
		if now.Sub(t) < p.failDuration {
			keep = append(keep, t)
		}
	}
	u.failures = append(keep, now)
	if len(u.failures) >= p.maxFails && !now.Before(u.downUntil) {
		u.downUntil = now.Add(p.failDuration)
		u.failures = u.failures[:0]
		return true
	}
	return false
}

// probeConfig is the active health check configuration.
type probeConfig struct {
	interval, timeout time.Duration
	passes, fails     int
}

// watch starts active checks of u, or joins the ones running; the
// returned function leaves. A reload provisions the new configuration
// before cleaning up the old one, so the checks and their verdict carry
// over.
func (u *upstreamState) watch(cfg probeConfig, log *zap.Logger) (release func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.watchers++
	u.probe = cfg
	if u.stopProbe == nil {
		ctx, cancel := context.WithCancel(context.Background())
		u.stopProbe = cancel
		go u.probeLoop(ctx, log)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			u.mu.Lock()
			defer u.mu.Unlock()
			u.watchers--
			if u.watchers == 0 && u.stopProbe != nil {
				u.stopProbe()
				u.stopProbe = nil
				// Nothing checks it any more: its last verdict must not
				// keep it out for good.
				u.activeDown, u.passes, u.fails = false, 0, 0
			}
		})
	}
}

func (u *upstreamState) probeLoop(ctx context.Context, log *zap.Logger) {
	for {
		u.mu.Lock()
		cfg := u.probe
		u.mu.Unlock()
		err := probeSRT(ctx, u.addr, cfg.timeout)
		if ctx.Err() != nil {
			return
		}
		u.recordProbe(err, cfg, log)
		// A little jitter keeps the probes of many upstreams apart.
		wait := cfg.interval + time.Duration(rand.Int64N(int64(cfg.interval/10)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (u *upstreamState) recordProbe(err error, cfg probeConfig, log *zap.Logger) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err == nil {
		u.fails = 0
		if u.activeDown {
			u.passes++
			if u.passes >= cfg.passes {
				u.activeDown, u.passes = false, 0
				log.Info("upstream is healthy again", zap.String("upstream", u.addr))
			}
		}
		return
	}
	u.passes = 0
	if !u.activeDown {
		u.fails++
		if u.fails >= cfg.fails {
			u.activeDown, u.fails = true, 0
			log.Warn("upstream failed its health checks", zap.String("upstream", u.addr), zap.Error(err))
		}
	}
}

// probeSRT sends an SRT induction to addr and waits for a listener's
// answer: a handshake addressed to our socket ID carrying the SRT magic.
// Unlike a UDP "dial", this tells a live SRT server from a dead port.
// No conclusion follows, so the server keeps no state for it.
func probeSRT(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	conn := nc.(*net.UDPConn)
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	id := substituteSocketID(0)
	ip := conn.RemoteAddr().(*net.UDPAddr).AddrPort().Addr()
	ind := wire.AppendInduction(nil, id, rand.Uint32N(1<<31), wire.MaxMTU, 8192, wire.EncodePeerIP(ip), handshake.Timestamp(time.Now()))
	if _, err := conn.Write(ind); err != nil {
		return probeError(err)
	}
	buf := make([]byte, pendingBuf)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return probeError(err)
		}
		hs, err := wire.ParseHandshake(buf[:n])
		if err == nil && hs.Header.DestSocket == id && hs.Type == wire.HSInduction && hs.ExtField == wire.Magic {
			return nil
		}
	}
}

func probeError(err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("health check: refused (nothing listens there)")
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errors.New("health check: no SRT induction response in time")
	}
	return fmt.Errorf("health check: %w", err)
}
