// Package peer is what the tests, the load harness and the demo origin
// share to run SRT peers: external programs started and stopped within
// bounded time, free ports, and a probe that tells when an SRT listener
// answers. It does not import "testing": internal/testpeer wraps it for
// tests, the load harness and the commands use it as it is.
package peer

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// StopGrace is how long a stopped process gets to exit after SIGTERM
// before it is killed.
const StopGrace = 3 * time.Second

// ProcOptions say where a process's standard streams go.
type ProcOptions struct {
	// Stdin makes the process read a pipe (Process.Stdin); else /dev/null.
	Stdin bool
	// Stdout and Stderr may be nil (discarded).
	Stdout, Stderr io.Writer
	// Group puts the process in a process group of its own, so that Stop
	// reaches whatever it starts, and (on Linux) kills it should this
	// process die first.
	Group bool
}

// Process is an external program.
type Process struct {
	Name  string
	cmd   *exec.Cmd
	group bool
	stdin io.WriteCloser
	done  chan struct{}
	err   error // valid once done is closed
}

// Start runs prog with args.
func Start(o ProcOptions, prog string, args ...string) (*Process, error) {
	p := &Process{Name: filepath.Base(prog), group: o.Group, done: make(chan struct{})}
	cmd := exec.Command(prog, args...)
	if o.Stdin {
		w, err := cmd.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		p.stdin = w
	}
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	if o.Group {
		cmd.SysProcAttr = groupAttr()
	}
	// Once the process has exited, a pipe copy that has not finished by
	// then is abandoned: Wait never blocks on a stray descendant.
	cmd.WaitDelay = StopGrace
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", p.Name, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stdin is the write end of the process's standard input (nil unless
// asked for).
func (p *Process) Stdin() io.WriteCloser { return p.stdin }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the exit error of a process that has ended.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Wait waits up to d for the process to exit by itself and returns its
// exit error. exited is false when it is still running.
func (p *Process) Wait(d time.Duration) (exited bool, err error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true, p.err
	case <-timer.C:
		return false, nil
	}
}

// Stop asks the process (its group, with Group) to end with SIGTERM
// (srt-live-transmit, ffmpeg and Caddy close their sockets and flush),
// kills it if it is still there after StopGrace, and waits for it.
func (p *Process) Stop() error {
	if p.Exited() {
		return p.err
	}
	p.signal(syscall.SIGTERM)
	if exited, err := p.Wait(StopGrace); exited {
		return err
	}
	p.signal(syscall.SIGKILL)
	<-p.done // a kill cannot be ignored; WaitDelay bounds the pipe copies
	return p.err
}

// Signal sends the process (its group, with Group) sig.
func (p *Process) Signal(sig syscall.Signal) { p.signal(sig) }

// Kill ends the process (its group, with Group) with SIGKILL, so that it
// cleans nothing up, and waits for it.
func (p *Process) Kill() {
	if !p.Exited() {
		p.signal(syscall.SIGKILL)
	}
	<-p.done
}

func (p *Process) signal(s syscall.Signal) {
	if p.group {
		_ = syscall.Kill(-p.Pid(), s)
		return
	}
	_ = p.cmd.Process.Signal(s)
}

// Buffer is a bytes.Buffer safe for one writer and many readers: a
// process's output as it comes.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Bytes is a copy of what was written so far.
func (l *Buffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

func (l *Buffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// StopAll stops every process at once, each with StopGrace to exit, and
// waits for them all.
func StopAll(ps ...*Process) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.Stop()
		}()
	}
	wg.Wait()
}
