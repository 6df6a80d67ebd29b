package testpeer

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// Redis is a redis-server of the test's own, on a free port, keeping
// nothing on disk: a restart brings it back empty.
type Redis struct {
	Addr string
	t    testing.TB
	bin  string
	port int
	proc *Process
}

// StartRedis starts redis-server (Debian: redis-server), skipping the test
// when it is not installed (failing it under SRT_INTEROP=required).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: RequireTool(t, "redis-server"), port: FreeTCPPort(t)}
	r.Addr = "127.0.0.1:" + strconv.Itoa(r.port)
	r.Start()
	return r
}

// Start starts the server (again, after Kill), empty, and waits until it
// takes connections.
func (r *Redis) Start() {
	r.t.Helper()
	r.proc = startProcess(r.t, false, nil, r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) || r.proc.Exited() {
			r.t.Fatalf("redis-server on %s did not start: %v\n%s", r.Addr, err, r.proc.Stderr())
		}
	}
}

// Kill ends the server at once (SIGKILL): its data is gone.
func (r *Redis) Kill() { r.proc.Kill() }
