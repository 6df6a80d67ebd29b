package session

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/ebpf"
)

// The ebpf data path: a session relayed by the reactor (or goroutines)
// whose data packets, keepalives, ACKs and ACKACKs the kernel forwards
// instead (internal/ebpf). Whatever the program leaves to the stack
// reaches the session's sockets and is relayed as on the socket path, so
// a session stays whole if its flow is never installed or is taken out
// early.

// offload is a session's flow in the kernel.
type offload struct {
	mu    sync.Mutex
	entry *ebpf.Entry
	// ended is set by endOffload: a flow installed after it (the session
	// was kicked while Start ran) is taken out at once.
	ended bool
}

// refusedOnce logs, once per process, why sessions that asked for the
// ebpf path got the socket path; attachedOnce, how the program is
// attached where it is (TCX links or tc filters, which outlive a crash).
var refusedOnce, attachedOnce sync.Once

// startOffload installs the session's flow. link is the session's socket
// connected to the caller; it and Upstream may already be closed (their
// addresses are remembered).
func (s *Session) startOffload(link Link) {
	c, ok := link.(*net.UDPConn)
	if !ok || s.Upstream == nil {
		return
	}
	f := ebpf.Flow{
		Caller:        s.Caller,
		Listen:        addrPortOfNet(c.LocalAddr()),
		UpstreamLocal: addrPortOfNet(s.Upstream.LocalAddr()),
		Origin:        addrPortOfNet(s.Upstream.RemoteAddr()),
	}
	if s.SubstituteSocket != 0 {
		f.RewriteSocket = s.CallerSocket
	}
	e, err := ebpf.Install(f)
	if err != nil {
		if errors.Is(err, ebpf.ErrRefused) {
			refusedOnce.Do(func() {
				s.Logger.Info("ebpf data path unavailable: sessions that ask for it use the socket path", zap.Error(err))
			})
		}
		s.Logger.Debug("session not offloaded; socket path", zap.String("session", s.ID), zap.Error(err))
		return
	}
	attachedOnce.Do(func() {
		mode, why := ebpf.Attach()
		s.Logger.Info("ebpf data path in use", zap.String("attach", mode), zap.String("why", why))
	})
	s.offload.mu.Lock()
	defer s.offload.mu.Unlock()
	if s.offload.ended {
		_, _ = e.Remove()
		return
	}
	s.offload.entry = e
}

func (s *Session) offloaded() bool {
	s.offload.mu.Lock()
	defer s.offload.mu.Unlock()
	return s.offload.entry != nil
}

// endOffload takes the flow out of the kernel, folding what the program
// forwarded into the session's own counters so that they never go back.
func (s *Session) endOffload() {
	o := &s.offload
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ended = true
	if o.entry == nil {
		return
	}
	fc, fu := o.entry.Remove()
	o.entry = nil
	s.fromCaller.packets.Add(fc.Packets)
	s.fromCaller.bytes.Add(fc.Bytes)
	s.fromUpstream.packets.Add(fu.Packets)
	s.fromUpstream.bytes.Add(fu.Bytes)
}

// addTo adds what the kernel forwarded to a snapshot of the relay's
// counters. The caller holds o.mu.
func (o *offload) addTo(st *Stats) {
	if o.entry == nil {
		return
	}
	fc, fu := o.entry.Counts()
	st.FromCaller += fc.Packets
	st.FromCallerBytes += fc.Bytes
	st.FromUpstream += fu.Packets
	st.FromUpstreamBytes += fu.Bytes
	st.KernelFromCaller, st.KernelFromUpstream = fc.Packets, fu.Packets
	// Once offloaded, well-formed ACKs pass through the kernel only.
	if fc.HaveACK {
		st.CallerACK, st.HaveCallerACK = fc.ACK, true
	}
	if fu.HaveACK {
		st.UpstreamACK, st.HaveUpstreamACK = fu.ACK, true
	}
}

// packets counts the datagrams taken from each side, by the relay and
// by the kernel.
func (s *Session) packets() (fromCaller, fromUpstream uint64) {
	s.offload.mu.Lock()
	defer s.offload.mu.Unlock()
	var st Stats
	s.offload.addTo(&st)
	return s.fromCaller.packets.Load() + st.FromCaller, s.fromUpstream.packets.Load() + st.FromUpstream
}

func addrPortOfNet(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.AddrPort()
	}
	return netip.AddrPort{}
}
