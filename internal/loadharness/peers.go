package loadharness

import (
	"fmt"
	"sync"
	"time"
)

// PeerKind says which SRT implementation a caller is.
type PeerKind string

// Caller kinds.
const (
	// Gosrt: gosrt callers in the harness process.
	Gosrt PeerKind = "gosrt"
	// Libsrt: libsrt callers out of process — srt-live-transmit publishers
	// fed over UDP by the harness, or the C caller.
	Libsrt PeerKind = "libsrt"
)

// SenderStats are a publisher's own SRT counters.
type SenderStats struct {
	Packets   uint64 // data packets on the wire, retransmissions included
	Retrans   uint64
	SendDrops uint64 // packets the sender gave up on
}

// publisher sends numbered packets on one SRT connection.
type publisher interface {
	Send(seq uint64) error
	SenderStats() (SenderStats, error)
	Close() error
}

// publishers is a set of connected publishers and their stream IDs.
type publishers struct {
	ids  []string
	pubs []publisher
	// failed counts the connect errors of those that did not connect.
	failed map[string]int
}

// connectPublishers connects n publishers of kind to addr, 16 at a time.
// One that cannot connect is counted, not fatal: gosrt sends each
// handshake packet once, so one lost datagram is a failed connect.
func (e *Env) connectPublishers(addr string, kind PeerKind, n int, pps float64, lifetime time.Duration) *publishers {
	pubs := make([]publisher, n)
	errs := make([]error, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range pubs {
		ids[i] = fmt.Sprintf("load/%s-%d", kind, i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pubs[i], errs[i] = e.connectPublisher(addr, ids[i], kind, pps, lifetime)
		}()
	}
	wg.Wait()
	ps := &publishers{failed: map[string]int{}}
	for i, err := range errs {
		if err != nil {
			ps.failed[err.Error()]++
			continue
		}
		ps.ids = append(ps.ids, ids[i])
		ps.pubs = append(ps.pubs, pubs[i])
	}
	return ps
}

func (e *Env) connectPublisher(addr, id string, kind PeerKind, pps float64, lifetime time.Duration) (publisher, error) {
	switch kind {
	case Gosrt:
		c, _, err := DialGosrt(addr, id, 3*time.Second)
		if err != nil {
			return nil, err
		}
		return &gosrtPublisher{conn: c, payload: NewPayload()}, nil
	case Libsrt:
		return startSLTPublisher(e.Procs, e.SLTBin, addr, id, pps, lifetime)
	}
	return nil, fmt.Errorf("unknown publisher kind %q", kind)
}

func (ps *publishers) close() {
	for _, p := range ps.pubs {
		_ = p.Close()
	}
}
