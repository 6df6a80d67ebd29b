package loadharness

import "syscall"

// childAttr puts a child in a process group of its own (so a stop reaches
// anything it started) and kills it should the harness die first.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
