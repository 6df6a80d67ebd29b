//go:build !linux

package ebpf

import (
	"errors"
	"net/netip"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// ErrRefused: see datapath_linux.go.
var ErrRefused = errors.New("ebpf data path refused: Linux only")

// AttachEnv and the attach modes: see datapath_linux.go.
const (
	AttachEnv = "CADDY_L4_SRT_EBPF_ATTACH"
	AttachTCX = "tcx"
	AttachTC  = "tc"
)

// Flow: see datapath_linux.go.
type Flow struct {
	Caller, Listen, UpstreamLocal, Origin netip.AddrPort
	RewriteSocket                         uint32
}

// Counts: see datapath_linux.go.
type Counts struct {
	Packets, Bytes uint64
	Last           time.Time
	ACK            wire.ACK
	HaveACK        bool
}

// Entry: see datapath_linux.go.
type Entry struct{}

// Install always refuses off Linux.
func Install(Flow) (*Entry, error) { return nil, ErrRefused }

// Counts of a flow that cannot exist.
func (*Entry) Counts() (Counts, Counts) { return Counts{}, Counts{} }

// Remove does nothing.
func (*Entry) Remove() (Counts, Counts) { return Counts{}, Counts{} }

// Close does nothing.
func Close() error { return nil }

// Attach is undecided: nothing is ever loaded.
func Attach() (mode, why string) { return "", "" }

// Attached is empty.
func Attached() []int { return nil }

// Probe always refuses off Linux.
func Probe() error { return ErrRefused }

// KernelAtLeast: not Linux.
func KernelAtLeast(int, int) bool { return false }
