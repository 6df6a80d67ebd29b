package peer

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Skipf("%s: %v", prog, err)
	}
	return p
}

// A process reads the pipe it was given and its output arrives; one that
// ignores SIGTERM is killed after StopGrace; a group stop reaches the
// process's children.
func TestProcess(t *testing.T) {
	var out Buffer
	p, err := Start(ProcOptions{Stdin: true, Stdout: &out}, need(t, "cat"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stdin().Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	p.Stdin().Close()
	if exited, err := p.Wait(5 * time.Second); !exited || err != nil {
		t.Fatalf("cat: exited %v, %v", exited, err)
	}
	if out.String() != "hello\n" || !p.Exited() || p.Err() != nil {
		t.Fatalf("cat wrote %q, exited %v, %v", out.String(), p.Exited(), p.Err())
	}

	sh := need(t, "sh")
	stubborn, err := Start(ProcOptions{}, sh, "-c", "trap '' TERM; sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	if exited, _ := stubborn.Wait(100 * time.Millisecond); exited {
		t.Fatal("sleep exited at once")
	}
	start := time.Now()
	stubborn.Stop()
	if took := time.Since(start); !stubborn.Exited() || took < StopGrace || took > StopGrace+2*time.Second {
		t.Fatalf("a process ignoring SIGTERM: exited %v after %v", stubborn.Exited(), took)
	}

	// The shell's child writes its pid; a group stop must end it too.
	var pids Buffer
	group, err := Start(ProcOptions{Stdout: &pids, Group: true}, sh, "-c", "sleep 30 & echo $!; wait")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(pids.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	child := strings.TrimSpace(pids.String())
	StopAll(group)
	// A signal is delivered when the child next runs: give it a moment.
	deadline = time.Now().Add(2 * time.Second)
	for alive(child) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(child) {
		_ = exec.Command("kill", "-9", child).Run()
		t.Fatalf("the group's child %s outlived the stop", child)
	}
}

// alive reports whether pid runs (a zombie waiting for its reaper does not).
func alive(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}
