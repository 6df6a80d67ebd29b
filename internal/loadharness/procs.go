// Package loadharness measures the relay: it starts Caddy (with caddy-l4's
// proxy handler or with this plugin) as a separate process in front of a
// gosrt origin, drives SRT traffic through it from gosrt and libsrt peers,
// and reads what the proxy process spent from /proc. The command
// internal/cmd/loadharness runs the scenarios and prints the tables.
package loadharness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// Procs starts external programs and stops every one of them at the end.
// Each process writes its output to a log file of its own in Dir.
type Procs struct {
	Dir string

	mu   sync.Mutex
	list []*Proc
	seq  int
}

// Proc is one external program.
type Proc struct {
	*peer.Process
	Name string
	Log  string // the file its stdout and stderr go to
}

// Start runs bin with args in a process group of its own. name labels the
// log file; a number keeps names unique.
func (g *Procs) Start(name, bin string, args ...string) (*Proc, error) {
	g.mu.Lock()
	g.seq++
	logPath := filepath.Join(g.Dir, fmt.Sprintf("%03d-%s.log", g.seq, name))
	g.mu.Unlock()
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	proc, err := peer.Start(peer.ProcOptions{Stdout: f, Stderr: f, Group: true}, bin, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Proc{Process: proc, Name: name, Log: logPath}
	g.mu.Lock()
	g.list = append(g.list, p)
	g.mu.Unlock()
	return p, nil
}

// StopAll stops every process still running, in parallel, and waits.
func (g *Procs) StopAll() {
	g.mu.Lock()
	list := g.list
	g.list = nil
	g.mu.Unlock()
	stopAll(list)
}

// stopAll stops the processes in parallel and waits.
func stopAll(list []*Proc) {
	ps := make([]*peer.Process, len(list))
	for i, p := range list {
		ps[i] = p.Process
	}
	peer.StopAll(ps...)
}

// Output is what the process wrote so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// WaitOutput waits up to d for the process to write s.
func (p *Proc) WaitOutput(s string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(p.Output(), s) {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v) before saying %q; see %s", p.Name, p.Err(), s, p.Log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not say %q within %v; see %s", p.Name, s, d, p.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
