package loadharness

import (
	"fmt"
	"sync"
	"sync/atomic"

	srt "github.com/datarhei/gosrt"
	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
)

// Origin is the SRT server every path delivers to: a gosrt listener that
// accepts every caller and counts, per stream ID, what it reads.
type Origin struct {
	srv      srtbackend.Server
	accepted atomic.Int64
	mu       sync.Mutex
	streams  map[string]*received
}

type received struct {
	mu    sync.Mutex
	seq   SeqTracker
	conns map[srt.Conn]struct{} // open ones
	ended recvStats             // summed over the closed ones
}

// recvStats are a receiver's own SRT counters.
type recvStats struct {
	RecvLoss    uint64 // packets the receiver found missing (before recovery)
	RecvRetrans uint64 // retransmitted packets it received
	RecvDrop    uint64 // packets it gave up on (too late)
}

func (r *recvStats) addConn(c srt.Conn) {
	var s srt.Statistics
	c.Stats(&s)
	r.RecvLoss += s.Accumulated.PktRecvLoss
	r.RecvRetrans += s.Accumulated.PktRecvRetrans
	r.RecvDrop += s.Accumulated.PktRecvDrop
}

// Delivery is what the origin got of one stream, with the receiver's own
// SRT statistics summed over its connections.
type Delivery struct {
	SeqTracker
	recvStats
}

// add sums d into the receiver (over streams).
func (s *Delivery) add(d Delivery) {
	s.Packets += d.Packets
	s.Bytes += d.Bytes
	s.Missing += d.Missing
	s.Late += d.Late
	s.RecvLoss += d.RecvLoss
	s.RecvRetrans += d.RecvRetrans
	s.RecvDrop += d.RecvDrop
}

// StartOrigin listens on a free port of 127.0.0.1.
func StartOrigin() (*Origin, error) {
	o := &Origin{streams: map[string]*received{}}
	o.srv = srtbackend.Server{Name: "origin", Serve: o.read}
	if err := o.srv.Listen("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	return o, nil
}

// Addr is the origin's SRT address.
func (o *Origin) Addr() string { return o.srv.Addr() }

// Accepted counts the connections accepted so far.
func (o *Origin) Accepted() int64 { return o.accepted.Load() }

// Live is the number of connections open now.
func (o *Origin) Live() int { return o.srv.Live() }

// Delivery returns what the origin got of streamID so far.
func (o *Origin) Delivery(streamID string) Delivery {
	o.mu.Lock()
	r := o.streams[streamID]
	o.mu.Unlock()
	if r == nil {
		return Delivery{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	d := Delivery{SeqTracker: r.seq, recvStats: r.ended}
	for c := range r.conns {
		d.addConn(c)
	}
	return d
}

// Close stops the origin and every connection.
func (o *Origin) Close() { o.srv.Close() }

// read counts what one connection delivers, per stream ID.
func (o *Origin) read(conn srt.Conn) {
	o.accepted.Add(1)
	id := conn.StreamId()
	o.mu.Lock()
	r := o.streams[id]
	if r == nil {
		r = &received{conns: map[srt.Conn]struct{}{}}
		o.streams[id] = r
	}
	o.mu.Unlock()
	r.mu.Lock()
	r.conns[conn] = struct{}{}
	r.mu.Unlock()
	buf := make([]byte, 2048)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		r.mu.Lock()
		r.seq.Add(buf[:n])
		r.mu.Unlock()
	}
	conn.Close()
	r.mu.Lock()
	delete(r.conns, conn)
	r.ended.addConn(conn)
	r.mu.Unlock()
}
