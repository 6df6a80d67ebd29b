package session

// Path is how a session's datagrams travel between its caller and the
// proxy. The handler asks for PathSocket, PathEBPF or PathListener (its
// data_path option); Session.Start decides, once, what the session gets.
type Path uint8

const (
	// PathListener relays through the caddy-l4 connection the caller came
	// in on: the way on systems where a session socket cannot be made.
	PathListener Path = iota
	// PathSocket relays through a UDP socket of the session's own,
	// connected to the caller, with a goroutine per direction: where the
	// reactor is unavailable (other OSes, CADDY_L4_SRT_RELAY=goroutines).
	PathSocket
	// PathReactor is PathSocket relayed by the process's shared reactor
	// (epoll, recvmmsg/sendmmsg): no goroutine and no buffer per session.
	PathReactor
	// PathEBPF is PathReactor with the session's data packets, keepalives,
	// ACKs and ACKACKs forwarded in the kernel (see offload.go): the relay
	// sees only the control packets the program leaves to it.
	PathEBPF
)

// OwnSocket reports whether the caller's datagrams reach the session on a
// socket of its own rather than through the listener.
func (p Path) OwnSocket() bool { return p != PathListener }

// DataPath is the data_path option value that gives this path.
func (p Path) DataPath() string {
	if p == PathEBPF {
		return "ebpf"
	}
	if p.OwnSocket() {
		return "socket"
	}
	return "listener"
}

// String names the path as logs and the admin API show it: listener,
// socket, reactor or ebpf.
func (p Path) String() string {
	switch p {
	case PathSocket:
		return "socket"
	case PathReactor:
		return "reactor"
	case PathEBPF:
		return "ebpf"
	}
	return "listener"
}
