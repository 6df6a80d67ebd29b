package peer

import "syscall"

// groupAttr puts a child in a process group of its own and kills it
// should its parent die first.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
