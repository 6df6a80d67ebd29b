package ebpf

// The dead-man's switch of the tc attach mode: a tc filter outlives the
// proxy that added it (a TCX link does not), so while the proxy lives one
// goroutine keeps the program's deadline ahead of now, and once it stops
// (SIGKILL included) the deadline passes within deadmanAhead and the
// program forwards nothing: a killed proxy's filter leaves every datagram
// to the stack.

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

const (
	// deadmanEvery is how often the deadline is pushed on; deadmanAhead
	// how far: a proxy stalled longer than the difference (1.5 s) only
	// loses the kernel's forwarding for a moment, its sessions' datagrams
	// reaching their sockets and the relay meanwhile.
	deadmanEvery = 500 * time.Millisecond
	deadmanAhead = 2 * time.Second
)

// deadman is the goroutine refreshing the deadline. The loaded state
// owns it: it is stopped before the map is closed.
type deadman struct {
	m    *ebpf.Map
	stop chan struct{}
	done chan struct{}
}

// startDeadman sets the deadline before returning, so that no filter is
// ever attached without one, then refreshes it until stop.
func startDeadman(m *ebpf.Map) (*deadman, error) {
	if err := pushDeadline(m, monotonic()+uint64(deadmanAhead)); err != nil {
		return nil, err
	}
	d := &deadman{m: m, stop: make(chan struct{}), done: make(chan struct{})}
	go d.run()
	return d, nil
}

func (d *deadman) run() {
	defer close(d.done)
	t := time.NewTicker(deadmanEvery)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			// A failed write only shortens the time left; the next tick
			// tries again.
			_ = pushDeadline(d.m, monotonic()+uint64(deadmanAhead))
		}
	}
}

// stopAndExpire stops the refreshes and sets a deadline already passed:
// a filter that could not be deleted goes inert at once.
func (d *deadman) stopAndExpire() error {
	close(d.stop)
	<-d.done
	return pushDeadline(d.m, 1)
}

func pushDeadline(m *ebpf.Map, ns uint64) error {
	if err := m.Put(uint32(0), ns); err != nil {
		return fmt.Errorf("setting the dead-man's deadline: %w", err)
	}
	return nil
}
