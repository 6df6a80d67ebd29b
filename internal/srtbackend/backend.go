// Package srtbackend is a small SRT publish/play server on gosrt: callers
// with m=publish feed a stream, every other caller of the same resource
// plays it. The tests and the demo use it as the origin servers behind the
// proxy; it records what it accepted so both can tell where a stream went.
package srtbackend

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	srt "github.com/datarhei/gosrt"

	"github.com/srtroute/caddy-l4-srt/internal/streamid"
)

// Conn describes one accepted caller.
type Conn struct {
	StreamID   string    `json:"stream_id"`
	Mode       string    `json:"mode"`        // publish or request
	PeerSocket uint32    `json:"peer_socket"` // the socket ID the caller presented
	Remote     string    `json:"remote"`
	Accepted   time.Time `json:"accepted"`
}

// Server is one SRT origin.
type Server struct {
	// Name labels the server in reports.
	Name string
	// Passphrase, when set, is required from every caller.
	Passphrase string
	// Reject, when set, may refuse a caller with a reason in libsrt's API
	// numbering (e.g. 1403); 0 accepts.
	Reject func(streamID string) uint32
	// Serve, when set, is handed every accepted connection instead of
	// the publish/play server, and returns when it is done with it (the
	// load harness counts what each stream delivers). The server closes
	// the connection after Serve, and on Close.
	Serve func(conn srt.Conn)

	ln      srt.Listener
	addr    string
	mu      sync.Mutex
	conns   []Conn
	streams map[string]*stream
	bytes   atomic.Uint64
	wg      sync.WaitGroup
	closed  chan struct{}
	live    map[srt.Conn]struct{}
}

type stream struct {
	subs      map[srt.Conn]struct{}
	published uint64
}

// Listen starts the server on addr ("127.0.0.1:0" picks a port).
func (s *Server) Listen(addr string) error {
	cfg := srt.DefaultConfig()
	ln, err := srt.Listen("srt", addr, cfg)
	if err != nil {
		return fmt.Errorf("srtbackend %s: %w", s.Name, err)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	s.streams = make(map[string]*stream)
	s.live = make(map[srt.Conn]struct{})
	s.closed = make(chan struct{})
	s.wg.Add(1)
	go s.accept()
	return nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Port is the port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.UDPAddr).Port }

// Close stops the server and every connection it holds.
func (s *Server) Close() {
	select {
	case <-s.closed:
		return
	default:
	}
	close(s.closed)
	s.ln.Close()
	s.mu.Lock()
	for c := range s.live {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Hangup closes every live connection (each sends a SHUTDOWN), keeping
// the server listening.
func (s *Server) Hangup() {
	s.mu.Lock()
	live := make([]srt.Conn, 0, len(s.live))
	for c := range s.live {
		live = append(live, c)
	}
	s.mu.Unlock()
	for _, c := range live {
		c.Close()
	}
}

// Conns returns what the server accepted so far.
func (s *Server) Conns() []Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Conn(nil), s.conns...)
}

// Live is the number of connections currently open.
func (s *Server) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// Published is the number of payload bytes received from publishers of resource.
func (s *Server) Published(resource string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[resource]; st != nil {
		return st.published
	}
	return 0
}

// Snapshot is what a server has seen, as its stats endpoint reports it.
type Snapshot struct {
	Name      string            `json:"name"`
	Addr      string            `json:"addr"`
	Conns     []Conn            `json:"conns"`
	Live      int               `json:"live"`
	Published map[string]uint64 `json:"published"`
}

// Snapshot returns what the server has seen so far.
func (s *Server) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{Name: s.Name, Addr: s.addr, Conns: append([]Conn(nil), s.conns...), Live: len(s.live),
		Published: make(map[string]uint64)}
	for r, st := range s.streams {
		if st.published > 0 {
			snap.Published[r] = st.published
		}
	}
	return snap
}

// Bytes is the number of payload bytes received from all publishers.
func (s *Server) Bytes() uint64 { return s.bytes.Load() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		req, err := s.ln.Accept2()
		if err != nil {
			return
		}
		if s.Reject != nil {
			if r := s.Reject(req.StreamId()); r != 0 {
				req.Reject(srt.RejectionReason(r + 1000))
				continue
			}
		}
		if req.IsEncrypted() {
			if err := req.SetPassphrase(s.Passphrase); err != nil {
				req.Reject(srt.REJ_BADSECRET)
				continue
			}
		} else if s.Passphrase != "" {
			req.Reject(srt.REJ_UNSECURE)
			continue
		}
		info := streamid.Parse(req.StreamId())
		mode := "request"
		if info.Mode == streamid.ModePublish {
			mode = "publish"
		}
		// Recorded before Accept answers the caller, so that a caller that
		// got its answer can count on finding itself here.
		s.mu.Lock()
		s.conns = append(s.conns, Conn{StreamID: req.StreamId(), Mode: mode, PeerSocket: req.PeerSocketId(),
			Remote: req.RemoteAddr().String(), Accepted: time.Now()})
		s.mu.Unlock()
		conn, err := req.Accept()
		s.mu.Lock()
		if err != nil {
			s.conns = s.conns[:len(s.conns)-1]
			s.mu.Unlock()
			continue
		}
		s.live[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.forget(conn, info.Resource)
			switch {
			case s.Serve != nil:
				s.Serve(conn)
			case mode == "publish":
				s.publish(conn, info.Resource)
			default:
				s.play(conn, info.Resource)
			}
		}()
	}
}

func (s *Server) streamOf(resource string) *stream {
	st := s.streams[resource]
	if st == nil {
		st = &stream{subs: make(map[srt.Conn]struct{})}
		s.streams[resource] = st
	}
	return st
}

func (s *Server) publish(conn srt.Conn, resource string) {
	buf := make([]byte, 2048)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		s.bytes.Add(uint64(n))
		s.mu.Lock()
		st := s.streamOf(resource)
		st.published += uint64(n)
		subs := make([]srt.Conn, 0, len(st.subs))
		for c := range st.subs {
			subs = append(subs, c)
		}
		s.mu.Unlock()
		for _, c := range subs {
			_, _ = c.Write(buf[:n])
		}
	}
}

func (s *Server) play(conn srt.Conn, resource string) {
	s.mu.Lock()
	s.streamOf(resource).subs[conn] = struct{}{}
	s.mu.Unlock()
	// A player only sends control packets; Read returns when it leaves.
	buf := make([]byte, 2048)
	for {
		if _, err := conn.Read(buf); err != nil {
			return
		}
	}
}

func (s *Server) forget(conn srt.Conn, resource string) {
	conn.Close()
	s.mu.Lock()
	delete(s.live, conn)
	if st := s.streams[resource]; st != nil {
		delete(st.subs, conn)
	}
	s.mu.Unlock()
}
