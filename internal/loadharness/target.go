package loadharness

import (
	"context"
	"fmt"
)

// Env is what every scenario needs: the programs to run and where their
// logs go.
type Env struct {
	Procs     *Procs
	CaddyBin  string
	SLTBin    string // srt-live-transmit
	CallerBin string // the C caller (internal/testpeer/libsrt/srtcaller.c)
	Proxy     ProxyOptions
	// ProfileDir, when set, receives CPU profiles of the proxy taken
	// during the stream runs that name a profile.
	ProfileDir string
}

// Target is one path in front of one origin: a fresh Caddy, or nothing
// for Direct.
type Target struct {
	Path  Path
	Addr  string // what callers dial
	Proxy *Proxy // nil for Direct
}

// Via sets up path in front of the origin at origin.
func (e *Env) Via(ctx context.Context, path Path, origin string) (*Target, error) {
	t := &Target{Path: path, Addr: origin}
	if path == Direct {
		return t, nil
	}
	p, err := StartProxy(ctx, e.Procs, e.CaddyBin, path, origin, e.Proxy)
	if err != nil {
		return nil, err
	}
	t.Proxy, t.Addr = p, p.Addr
	return t, nil
}

// Close stops the proxy.
func (t *Target) Close() {
	if t.Proxy != nil {
		t.Proxy.Proc.Stop()
	}
}

// Usage reads the proxy's CPU and memory; the zero Usage for Direct.
func (t *Target) Usage() (Usage, error) {
	if t.Proxy == nil {
		return Usage{}, nil
	}
	if t.Proxy.Proc.Exited() {
		return Usage{}, fmt.Errorf("caddy (%s) exited; see %s", t.Path, t.Proxy.Proc.Log)
	}
	return t.Proxy.Usage()
}

// relayCounters reads the plugin's relay metrics; zero for paths
// without the plugin.
func (t *Target) relayCounters(ctx context.Context) (RelayCounters, error) {
	switch t.Path {
	case SRT, SRTUnbatched, SRTListener:
		return t.Proxy.RelayCounters(ctx)
	}
	return RelayCounters{}, nil
}

// originServer is an origin a scenario runs behind the path.
type originServer interface {
	Addr() string
	Close()
}

// viaOrigin starts an origin and the proxy for path in front of it; stop closes
// both.
func viaOrigin[O originServer](ctx context.Context, e *Env, path Path, start func() (O, error)) (origin O, t *Target, stop func(), err error) {
	origin, err = start()
	if err != nil {
		return origin, nil, nil, err
	}
	t, err = e.Via(ctx, path, origin.Addr())
	if err != nil {
		origin.Close()
		return origin, nil, nil, err
	}
	return origin, t, func() { t.Close(); origin.Close() }, nil
}
