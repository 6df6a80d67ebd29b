package srthandler

import (
	"sync"

	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/ebpf"
	"github.com/srtroute/caddy-l4-srt/internal/session"
)

// wantPath is the data path a new session asks for, by data_path.
func (h *Handler) wantPath() session.Path {
	switch h.DataPath {
	case "listener":
		return session.PathListener
	case "ebpf":
		return session.PathEBPF
	case "auto":
		return autoPath(h.logger)
	}
	return session.PathSocket
}

var auto struct {
	once sync.Once
	path session.Path
}

// autoPath is what data_path auto picks, decided and logged once per
// process: the kernel does not change under it.
func autoPath(log *zap.Logger) session.Path {
	auto.once.Do(func() {
		probe := ebpf.Probe()
		var why string
		auto.path, why = chooseAuto(probe, ebpf.KernelAtLeast(6, 13))
		fields := []zap.Field{zap.String("data_path", auto.path.DataPath()), zap.String("why", why), zap.NamedError("ebpf", probe)}
		if probe == nil {
			// TCX links, or tc filters that outlive a crash: the operator's to know.
			mode, modeWhy := ebpf.Attach()
			fields = append(fields, zap.String("attach", mode), zap.String("attach_why", modeWhy))
		}
		if log != nil {
			log.Info("data_path auto", fields...)
		}
	})
	return auto.path
}

// chooseAuto picks a path whose cost per packet does not grow with the
// number of sessions: ebpf where the program loads; else the socket path
// on kernels that find a connected UDP socket by its 4-tuple (6.13 and
// later), where before they scored every socket on the port; else the
// listener path, one socket whose datagrams caddy-l4 hands out by source.
func chooseAuto(probe error, hashes4Tuple bool) (session.Path, string) {
	switch {
	case probe == nil:
		return session.PathEBPF, "the ebpf program loads"
	case hashes4Tuple:
		return session.PathSocket, "no ebpf; the kernel finds connected UDP sockets by 4-tuple"
	default:
		return session.PathListener, "no ebpf, and a kernel before 6.13 scores every socket on the port per datagram"
	}
}
