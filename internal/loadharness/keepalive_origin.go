package loadharness

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// The idle-session scenario needs sessions that are idle the way libsrt's
// are: a keepalive each way per second and nothing else. gosrt peers are
// not (they send a full ACK every 10 ms and get an ACKACK back, about 270
// datagrams a second per idle session), so the scenario runs on two small
// peers of its own that speak just enough SRT: an HSv5 handshake with
// HSREQ/HSRSP and a stream ID, keepalives, SHUTDOWN.

// keepaliveInterval is how often an idle SRT peer sends a keepalive.
const keepaliveInterval = time.Second

// KeepaliveOrigin is an SRT listener that accepts every caller and then
// only exchanges keepalives with it.
type KeepaliveOrigin struct {
	conn  *net.UDPConn
	start time.Time
	mu    sync.Mutex
	peers map[uint32]*keepalivePeer // by our socket ID
	byID  map[peerKey]uint32        // caller address + socket → our socket ID
	done  chan struct{}
	wg    sync.WaitGroup
	// delays are the probes' (delay.go) as they arrived.
	delays Delays
}

type peerKey struct {
	addr   netip.AddrPort
	socket uint32
}

type keepalivePeer struct {
	addr     netip.AddrPort
	socket   uint32 // the caller's
	response []byte // our conclusion response, for repeats
	heard    time.Time
}

// StartKeepaliveOrigin listens on a free port of 127.0.0.1.
func StartKeepaliveOrigin() (*KeepaliveOrigin, error) {
	return StartKeepaliveOriginOn(net.IPv4(127, 0, 0, 1))
}

// StartKeepaliveOriginOn listens on a free port of ip.
func StartKeepaliveOriginOn(ip net.IP) (*KeepaliveOrigin, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(4 << 20)
	if err := timestamping(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("receive timestamps: %w", err)
	}
	o := &KeepaliveOrigin{conn: c, start: time.Now(), peers: map[uint32]*keepalivePeer{},
		byID: map[peerKey]uint32{}, done: make(chan struct{})}
	o.wg.Add(2)
	go o.serve()
	go o.keepalives()
	return o, nil
}

// Addr is the origin's address.
func (o *KeepaliveOrigin) Addr() string { return o.conn.LocalAddr().String() }

// HeardWithin is the number of connected callers the origin received a
// datagram from within d.
func (o *KeepaliveOrigin) HeardWithin(d time.Duration) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, p := range o.peers {
		if time.Since(p.heard) < d {
			n++
		}
	}
	return n
}

// Close stops the origin.
func (o *KeepaliveOrigin) Close() {
	close(o.done)
	o.conn.Close()
	o.wg.Wait()
}

func (o *KeepaliveOrigin) now() uint32 { return uint32(time.Since(o.start).Microseconds()) }

func (o *KeepaliveOrigin) serve() {
	defer o.wg.Done()
	buf := make([]byte, wire.MaxDatagram)
	oob := make([]byte, 128)
	for {
		n, oobn, _, from, err := o.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p := buf[:n]
		if dest := wire.DestSocketOf(p); dest != 0 {
			// Keepalives and the rest need no answer.
			o.mu.Lock()
			if peer := o.peers[dest]; peer != nil {
				peer.heard = time.Now()
				if sent, ok := probeSent(p); ok && len(o.delays) < maxProbes {
					o.delays = append(o.delays, receivedAt(oob[:oobn]).Sub(sent))
				}
				if wire.IsShutdown(p) {
					delete(o.byID, peerKey{peer.addr, peer.socket})
					delete(o.peers, dest)
				}
			}
			o.mu.Unlock()
			continue
		}
		hs, err := wire.ParseHandshake(p)
		if err != nil {
			continue
		}
		switch hs.Type {
		case wire.HSInduction:
			_, _ = o.conn.WriteToUDPAddrPort(wire.AppendInductionResponse(nil, &hs, cookieFor(from), o.now()), from)
		case wire.HSConclusion:
			if hs.Cookie != cookieFor(from) {
				continue
			}
			if resp := o.accept(from, &hs); resp != nil {
				_, _ = o.conn.WriteToUDPAddrPort(resp, from)
			}
		}
	}
}

// accept registers a caller (once) and returns the conclusion response.
func (o *KeepaliveOrigin) accept(from netip.AddrPort, hs *wire.Handshake) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	key := peerKey{from, hs.SocketID}
	if id, ok := o.byID[key]; ok {
		return o.peers[id].response
	}
	ext, ok := hsrspFor(hs.Extensions)
	if !ok {
		return wire.AppendRejection(nil, hs, wire.RejectReason(1), o.now()) // SRT_REJ_SYSTEM
	}
	id := rand.Uint32() | 1
	for o.peers[id] != nil {
		id = rand.Uint32() | 1
	}
	resp := *hs
	resp.Header = wire.Header{Control: true, Type: wire.CtrlHandshake, Timestamp: o.now(), DestSocket: hs.SocketID}
	resp.SocketID = id
	resp.Cookie = 0
	resp.ExtField = wire.ExtFlagHSREQ
	resp.Extensions = ext
	peer := &keepalivePeer{addr: from, socket: hs.SocketID, response: resp.Append(nil), heard: time.Now()}
	o.peers[id] = peer
	o.byID[key] = id
	return peer.response
}

// hsrspFor answers the caller's HSREQ block with an HSRSP of the same body.
func hsrspFor(ext []byte) ([]byte, bool) {
	for len(ext) > 0 {
		e, rest, ok, err := wire.NextExtension(ext)
		if err != nil || !ok {
			return nil, false
		}
		if e.Type == wire.ExtHSREQ {
			return wire.AppendExtension(nil, wire.ExtHSRSP, e.Body), true
		}
		ext = rest
	}
	return nil, false
}

func cookieFor(a netip.AddrPort) uint32 {
	h := fnv.New32a()
	b, _ := a.MarshalBinary()
	h.Write(b)
	return h.Sum32() | 1
}

func (o *KeepaliveOrigin) keepalives() {
	defer o.wg.Done()
	t := time.NewTicker(keepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-o.done:
			return
		case <-t.C:
		}
		o.mu.Lock()
		peers := make([]*keepalivePeer, 0, len(o.peers))
		for _, p := range o.peers {
			peers = append(peers, p)
		}
		o.mu.Unlock()
		for _, p := range peers {
			_, _ = o.conn.WriteToUDPAddrPort(appendKeepalive(nil, p.socket, o.now()), p.addr)
		}
	}
}

func appendKeepalive(dst []byte, dest, timestamp uint32) []byte {
	dst = wire.Header{Control: true, Type: wire.CtrlKeepalive, Timestamp: timestamp, DestSocket: dest}.Append(dst)
	return append(dst, 0, 0, 0, 0)
}
