// Package testpeer holds what the end-to-end tests run against: an
// in-process Caddy with the plugin, real SRT peers (gosrt in process,
// libsrt's tools and a small C caller out of process) and a UDP relay that
// can lose chosen packets.
package testpeer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile" // the caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/logging"       // file log writers
	_ "github.com/caddyserver/caddy/v2/modules/metrics"       // /metrics on the admin API
	_ "github.com/mholt/caddy-l4/layer4"

	_ "github.com/srtroute/caddy-l4-srt" // the plugin's modules
	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// caddyMu serialises tests that run Caddy: its running config is global.
var caddyMu sync.Mutex

// Proxy is an in-process Caddy running the layer4 app.
type Proxy struct {
	// Addr is the UDP address the SRT listener is on.
	Addr string
	// Admin is the admin API address, "" when disabled.
	Admin   string
	logFile string
	t       testing.TB
	apps    map[string]any
	more    []string
	// route, when set, is the server's one route instead of the srt
	// matcher and handler (another handler to compare with).
	route map[string]any
}

// Options shape a proxy config.
type Options struct {
	// Listen overrides the listener address (default 127.0.0.1 and a free port).
	Listen string
	// Admin enables the admin API on a free localhost port.
	Admin bool
	// Apps are further Caddy apps to run beside layer4, by name (e.g. an
	// http app with the srs_heartbeat handler).
	Apps map[string]any
	// LogFile, when set, receives Caddy's logs as JSON lines.
	LogFile string
	// MoreListen are further listener addresses of the same server.
	MoreListen []string
}

// StartProxy starts Caddy with one layer4 UDP server whose only route
// sends SRT handshakes to the srt handler configured by handler (the
// handler's JSON object without the "handler" key).
func StartProxy(t testing.TB, handler map[string]any, opt Options) *Proxy {
	t.Helper()
	caddyMu.Lock()
	p := &Proxy{t: t, Addr: opt.Listen, logFile: opt.LogFile, apps: opt.Apps, more: opt.MoreListen}
	if p.Addr == "" {
		p.Addr = "127.0.0.1:" + strconv.Itoa(FreeUDPPort(t))
	}
	if opt.Admin {
		p.Admin = "127.0.0.1:" + strconv.Itoa(FreeTCPPort(t))
	}
	if err := caddy.Load(p.Config(handler), true); err != nil {
		caddyMu.Unlock()
		t.Fatalf("starting caddy: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
		caddyMu.Unlock()
	})
	return p
}

// Config renders the full Caddy JSON config for handler.
func (p *Proxy) Config(handler map[string]any) []byte {
	h := map[string]any{"handler": "srt"}
	for k, v := range handler {
		h[k] = v
	}
	admin := map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	if p.Admin != "" {
		admin = map[string]any{"listen": p.Admin, "config": map[string]any{"persist": false}}
	}
	level := os.Getenv("SRT_TEST_LOG")
	if level == "" {
		level = "INFO"
	}
	logs := map[string]any{"level": level}
	if p.logFile != "" {
		logs["writer"] = map[string]any{"output": "file", "filename": p.logFile}
		logs["encoder"] = map[string]any{"format": "json"}
	}
	cfg := map[string]any{
		"admin":   admin,
		"logging": map[string]any{"logs": map[string]any{"default": logs}},
		"apps": map[string]any{
			"layer4": map[string]any{
				"servers": map[string]any{
					"srt": map[string]any{
						"listen": listenAddrs(p.Addr, p.more),
						"routes": []any{p.routeFor(h)},
					},
				},
			},
		},
	}
	for name, app := range p.apps {
		cfg["apps"].(map[string]any)[name] = app
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

func listenAddrs(first string, more []string) []string {
	out := []string{"udp/" + first}
	for _, a := range more {
		out = append(out, "udp/"+a)
	}
	return out
}

// Reload replaces the running config the way an operator does: a POST to
// the admin API's /load endpoint.
func (p *Proxy) Reload(handler map[string]any) error {
	if p.Admin == "" {
		return fmt.Errorf("reload needs the admin API")
	}
	_, err := adminDo(&http.Client{Timeout: 10 * time.Second}, http.MethodPost, "http://"+p.Admin+"/load", p.Config(handler))
	return err
}

// FreeUDPPort returns a UDP port that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	return must(t, peer.FreeUDPPort)
}

// FreeTCPPort returns a TCP port that was free a moment ago.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	return must(t, peer.FreeTCPPort)
}

// must is f's port, or the test's end.
func must(t testing.TB, f func() (int, error)) int {
	t.Helper()
	port, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Get fetches an admin API path.
func (p *Proxy) Get(path string) ([]byte, error) {
	return p.admin(http.MethodGet, path)
}

// Post sends an empty POST to an admin API path.
func (p *Proxy) Post(path string) ([]byte, error) {
	return p.admin(http.MethodPost, path)
}

// Delete sends DELETE to an admin API path.
func (p *Proxy) Delete(path string) ([]byte, error) {
	return p.admin(http.MethodDelete, path)
}

func (p *Proxy) admin(method, path string) ([]byte, error) {
	return adminDo(&http.Client{Timeout: 5 * time.Second}, method, "http://"+p.Admin+path, nil)
}

// adminDo sends one request to an admin API and returns its answer's
// body, or an error for a status other than 2xx.
func adminDo(c *http.Client, method, url string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return b, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, b)
	}
	return b, nil
}

func (p *Proxy) routeFor(h map[string]any) map[string]any {
	if p.route != nil {
		return p.route
	}
	return map[string]any{
		"match":  []any{map[string]any{"srt": map[string]any{}}},
		"handle": []any{h},
	}
}
