package loadharness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// Path is a way from the callers to the origin.
type Path string

// The paths the harness compares.
const (
	// Direct: callers dial the origin; no proxy.
	Direct Path = "direct"
	// L4Proxy: caddy-l4's own proxy handler with the origin as its one
	// static upstream (it cannot route by stream ID).
	L4Proxy Path = "l4proxy"
	// SRT: this plugin, sessions on sockets of their own (data_path socket).
	SRT Path = "srt"
	// SRTUnbatched: SRT with batch_window off, every datagram relayed the
	// moment it arrives.
	SRTUnbatched Path = "srt-unbatched"
	// SRTListener: this plugin relaying through caddy-l4's listener
	// (data_path listener).
	SRTListener Path = "srt-listener"
)

// AllPaths in report order.
var AllPaths = []Path{Direct, L4Proxy, SRT, SRTUnbatched, SRTListener}

// ParsePath checks a path name.
func ParsePath(s string) (Path, error) {
	for _, p := range AllPaths {
		if string(p) == s {
			return p, nil
		}
	}
	names := make([]string, len(AllPaths))
	for i, p := range AllPaths {
		names[i] = string(p)
	}
	return "", fmt.Errorf("unknown path %q (want one of %s)", s, strings.Join(names, ", "))
}

// ProxyOptions shape the Caddy config.
type ProxyOptions struct {
	// LogLevel is Caddy's default log level.
	LogLevel string
	// MaxPending is the plugin's max_pending and max_pending_per_ip: every
	// caller of the harness comes from 127.0.0.1, so the per-IP default
	// (32) would stand for one busy NAT, not for a fleet.
	MaxPending int
}

// Proxy is Caddy running as a separate process.
type Proxy struct {
	Path  Path
	Addr  string // the UDP address callers dial
	Admin string // the admin API (pprof lives there)
	Proc  *Proc
}

// StartProxy writes the config for path in front of origin, runs Caddy
// with it and waits until it answers an SRT induction.
func StartProxy(ctx context.Context, procs *Procs, caddyBin string, path Path, origin string, o ProxyOptions) (*Proxy, error) {
	port, err := peer.FreeUDPPort()
	if err != nil {
		return nil, err
	}
	admin, err := peer.FreeTCPPort()
	if err != nil {
		return nil, err
	}
	p := &Proxy{Path: path, Addr: "127.0.0.1:" + strconv.Itoa(port), Admin: "127.0.0.1:" + strconv.Itoa(admin)}
	cfg, err := json.MarshalIndent(caddyConfig(path, p.Addr, p.Admin, origin, o), "", "  ")
	if err != nil {
		return nil, err
	}
	file := filepath.Join(procs.Dir, fmt.Sprintf("caddy-%s-%d.json", path, port))
	if err := os.WriteFile(file, cfg, 0o644); err != nil {
		return nil, err
	}
	p.Proc, err = procs.Start("caddy-"+string(path), caddyBin, "run", "--config", file)
	if err != nil {
		return nil, err
	}
	if err := peer.WaitSRT(ctx, p.Addr, 15*time.Second, p.Proc.Exited); err != nil {
		p.Proc.Stop()
		return nil, fmt.Errorf("caddy (%s): %w; see %s", path, err, p.Proc.Log)
	}
	return p, nil
}

// Usage reads the proxy process's CPU and memory.
func (p *Proxy) Usage() (Usage, error) { return ReadUsage(p.Proc.Pid()) }

// CPUProfile fetches a CPU profile of d from Caddy's admin API into file.
func (p *Proxy) CPUProfile(ctx context.Context, d time.Duration, file string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.Admin, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func caddyConfig(path Path, listen, admin, origin string, o ProxyOptions) map[string]any {
	var route map[string]any
	switch path {
	case L4Proxy:
		route = map[string]any{"handle": []any{map[string]any{
			"handler":   "proxy",
			"upstreams": []any{map[string]any{"dial": []string{"udp/" + origin}}},
		}}}
	default:
		handler := map[string]any{
			"handler":            "srt",
			"data_path":          "socket",
			"max_pending":        o.MaxPending,
			"max_pending_per_ip": o.MaxPending,
			"routes":             []any{map[string]any{"to": []string{"udp/" + origin}}},
		}
		switch path {
		case SRTListener:
			handler["data_path"] = "listener"
		case SRTUnbatched:
			handler["batch_window"] = -1
		}
		route = map[string]any{
			"match":  []any{map[string]any{"srt": map[string]any{}}},
			"handle": []any{handler},
		}
	}
	return map[string]any{
		"admin":   map[string]any{"listen": admin, "config": map[string]any{"persist": false}},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": o.LogLevel}}},
		"apps": map[string]any{"layer4": map[string]any{"servers": map[string]any{
			"load": map[string]any{"listen": []string{"udp/" + listen}, "routes": []any{route}},
		}}},
	}
}
