package loadharness

import (
	"os"
	"strconv"
	"strings"
)

// MachineCPU is the whole machine's CPU time, from the first line of
// /proc/stat, in clock ticks.
type MachineCPU struct{ Busy, Idle uint64 }

// ReadMachineCPU reads /proc/stat; the zero value when it cannot.
func ReadMachineCPU() MachineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return MachineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return MachineCPU{}
	}
	var m MachineCPU
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return MachineCPU{}
		}
		switch i {
		case 3, 4: // idle, iowait
			m.Idle += n
		case 0, 1, 2, 5, 6, 7: // user, nice, system, irq, softirq, steal
			m.Busy += n
		}
	}
	return m
}

// IdlePercentSince is the share of CPU time the machine spent idle since
// the earlier reading; -1 when unknown.
func (m MachineCPU) IdlePercentSince(earlier MachineCPU) float64 {
	busy, idle := m.Busy-earlier.Busy, m.Idle-earlier.Idle
	if busy+idle == 0 {
		return -1
	}
	return 100 * float64(idle) / float64(busy+idle)
}
