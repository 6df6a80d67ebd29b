package testpeer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// CaddyProcess is Caddy with the plugin in a process of its own
// (internal/cmd/caddy-srt): a second proxy instance beside the in-process
// one, or one to kill.
type CaddyProcess struct {
	*Process
	Addr string
	// cfg renders its configs and speaks to its admin API (on a free
	// localhost TCP port), as for the in-process Caddy.
	cfg *Proxy
}

// StartCaddyProcess builds internal/cmd/caddy-srt and runs it with the
// same config StartProxy would load for handler, admin API on, waiting
// until its SRT listener answers.
func StartCaddyProcess(t testing.TB, handler map[string]any) *CaddyProcess {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "caddy-srt")
	build := exec.Command("go", "build", "-o", bin, "github.com/srtroute/caddy-l4-srt/internal/cmd/caddy-srt")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building caddy-srt: %v\n%s", err, out)
	}
	cfg := &Proxy{t: t, Addr: "127.0.0.1:" + strconv.Itoa(FreeUDPPort(t)), Admin: "127.0.0.1:" + strconv.Itoa(FreeTCPPort(t))}
	path := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(path, cfg.Config(handler), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &CaddyProcess{Addr: cfg.Addr, cfg: cfg}
	c.Process = startProcess(t, false, nil, bin, "run", "--config", path)
	if err := peer.WaitSRT(context.Background(), c.Addr, 10*time.Second, c.Exited); err != nil {
		t.Fatalf("caddy-srt on %s: %v\n%s", c.Addr, err, c.Stderr())
	}
	return c
}

// Reload replaces the process's running config as an operator does: a
// POST of the whole config to its admin API's /load.
func (c *CaddyProcess) Reload(handler map[string]any) error { return c.cfg.Reload(handler) }

// Get fetches a path of the process's admin API.
func (c *CaddyProcess) Get(path string) ([]byte, error) { return c.cfg.Get(path) }
