package loadharness

import (
	"time"

	srt "github.com/datarhei/gosrt"
	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// DialGosrt connects a gosrt caller and says how long that took.
func DialGosrt(addr, streamID string, timeout time.Duration) (srt.Conn, time.Duration, error) {
	start := time.Now()
	c, err := peer.Dial(addr, streamID, peer.DialOptions{Timeout: timeout})
	return c, time.Since(start), err
}

// gosrtPublisher sends generated packets on a gosrt connection.
type gosrtPublisher struct {
	conn    srt.Conn
	payload []byte
}

func (p *gosrtPublisher) Send(seq uint64) error {
	StampSeq(p.payload, seq)
	_, err := p.conn.Write(p.payload)
	return err
}

// SenderStats reads gosrt's own counters.
func (p *gosrtPublisher) SenderStats() (SenderStats, error) {
	var s srt.Statistics
	p.conn.Stats(&s)
	return SenderStats{
		Packets:   s.Accumulated.PktSent,
		Retrans:   s.Accumulated.PktRetrans,
		SendDrops: s.Accumulated.PktSendDrop,
	}, nil
}

func (p *gosrtPublisher) Close() error { return p.conn.Close() }
