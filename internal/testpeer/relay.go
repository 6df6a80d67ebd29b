package testpeer

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Relay is a UDP relay that stands between the proxy and a backend and
// can lose chosen datagrams. It serves one client address at a time, which
// is all a proxy's upstream socket is.
type Relay struct {
	// Addr is where the proxy should send.
	Addr string
	drop atomic.Pointer[func(toBackend bool, p []byte) bool]

	ln      *net.UDPConn
	backend *net.UDPAddr
	mu      sync.Mutex
	clients map[string]*net.UDPConn // client address → socket towards the backend
	closed  bool
	paused  atomic.Bool
	dropped atomic.Int64
	seen    atomic.Int64
	wg      sync.WaitGroup
}

// NewRelay starts a relay in front of backend.
func NewRelay(t testing.TB, backend string) *Relay {
	t.Helper()
	ba, err := net.ResolveUDPAddr("udp", backend)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Addr: ln.LocalAddr().String(), ln: ln, backend: ba, clients: map[string]*net.UDPConn{}}
	r.wg.Add(1)
	go r.fromClients()
	t.Cleanup(r.Close)
	return r
}

// Pause makes the relay drop everything until Resume.
func (r *Relay) Pause()  { r.paused.Store(true) }
func (r *Relay) Resume() { r.paused.Store(false) }

// Dropped counts the datagrams the relay lost on purpose.
func (r *Relay) Dropped() int64 { return r.dropped.Load() }

// Close stops the relay.
func (r *Relay) Close() {
	r.ln.Close()
	r.mu.Lock()
	r.closed = true
	for _, c := range r.clients {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// SetDrop installs a function that decides, per datagram, whether the
// relay loses it; toBackend tells the direction. It may be called while
// the relay runs.
func (r *Relay) SetDrop(f func(toBackend bool, p []byte) bool) { r.drop.Store(&f) }

// Seen counts every datagram that reached the relay, either way.
func (r *Relay) Seen() int64 { return r.seen.Load() }

func (r *Relay) lose(toBackend bool, p []byte) bool {
	r.seen.Add(1)
	if f := r.drop.Load(); r.paused.Load() || (f != nil && (*f)(toBackend, p)) {
		r.dropped.Add(1)
		return true
	}
	return false
}

func (r *Relay) fromClients() {
	defer r.wg.Done()
	buf := make([]byte, 9000)
	for {
		n, from, err := r.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		up, ok := r.clients[from.String()]
		if !ok && r.closed {
			r.mu.Unlock()
			return
		}
		if !ok {
			up, err = net.DialUDP("udp", nil, r.backend)
			if err != nil {
				r.mu.Unlock()
				continue
			}
			r.clients[from.String()] = up
			r.wg.Add(1)
			go r.fromBackend(up, from)
		}
		r.mu.Unlock()
		if !r.lose(true, buf[:n]) {
			_, _ = up.Write(buf[:n])
		}
	}
}

func (r *Relay) fromBackend(up *net.UDPConn, client *net.UDPAddr) {
	defer r.wg.Done()
	buf := make([]byte, 9000)
	for {
		n, err := up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors while the backend restarts
		}
		if !r.lose(false, buf[:n]) {
			_, _ = r.ln.WriteToUDP(buf[:n], client)
		}
	}
}
