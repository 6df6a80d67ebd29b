package srthandler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
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

// HealthOptions are the handler's health options: active SRT checks
// and the passive verdict of failed handshakes.
type HealthOptions struct {
	// HealthInterval turns on active health checks: every interval each
	// upstream gets an SRT induction, and is healthy while it answers with
	// one within HealthTimeout. Off by default.
	HealthInterval caddy.Duration `json:"health_interval,omitempty"`
	// HealthTimeout bounds one check. Default 1s.
	HealthTimeout caddy.Duration `json:"health_timeout,omitempty"`
	// HealthPasses and HealthFails are how many checks in a row bring an
	// upstream back or take it out. Default 2 each.
	HealthPasses int `json:"health_passes,omitempty"`
	HealthFails  int `json:"health_fails,omitempty"`
	// MaxFails failed handshakes (timeouts, refusals) within FailDuration
	// take an upstream out for FailDuration. Defaults 1 and 10s; a
	// negative FailDuration ("off" in the Caddyfile) turns this off.
	MaxFails     int            `json:"max_fails,omitempty"`
	FailDuration caddy.Duration `json:"fail_duration,omitempty"`
}

func (o *HealthOptions) provision() {
	defaultTo(&o.HealthTimeout, caddy.Duration(DefaultHealthTimeout))
	defaultTo(&o.HealthPasses, DefaultHealthPasses)
	defaultTo(&o.HealthFails, DefaultHealthFails)
	defaultTo(&o.MaxFails, DefaultMaxFails)
	defaultTo(&o.FailDuration, caddy.Duration(DefaultFailDuration))
}

func (o *HealthOptions) validate() error {
	if o.HealthInterval < 0 || o.HealthTimeout < 0 {
		return errors.New("srt: durations must not be negative")
	}
	if o.HealthPasses < 0 || o.HealthFails < 0 || o.MaxFails < 0 {
		return errors.New("srt: counts and limits must not be negative")
	}
	if o.HealthInterval > 0 && o.HealthTimeout > o.HealthInterval {
		return fmt.Errorf("srt: health_timeout %v is longer than health_interval %v", time.Duration(o.HealthTimeout), time.Duration(o.HealthInterval))
	}
	return nil
}

func (o *HealthOptions) passive() passivePolicy {
	return passivePolicy{maxFails: o.MaxFails, failDuration: time.Duration(o.FailDuration)}
}

// probeConfig is the active check configuration; nil when checks are off.
func (o *HealthOptions) probeConfig() *probeConfig {
	if o.HealthInterval <= 0 {
		return nil
	}
	return &probeConfig{
		interval: time.Duration(o.HealthInterval),
		timeout:  time.Duration(o.HealthTimeout),
		passes:   o.HealthPasses,
		fails:    o.HealthFails,
	}
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
		if wire.AnswersInduction(buf[:n], id) {
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
