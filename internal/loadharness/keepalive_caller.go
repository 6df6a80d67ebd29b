package loadharness

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// KeepaliveCaller is an SRT caller that, once connected, sends a keepalive
// every second and reads (and drops) whatever comes back, as an idle
// libsrt caller does.
type KeepaliveCaller struct {
	conn   *net.UDPConn
	socket uint32 // ours
	peer   uint32 // the listener's
	start  time.Time
	heard  atomic.Int64 // unix nanoseconds of the last datagram received
	wg     sync.WaitGroup
}

// HeardWithin reports whether the caller received anything within d.
func (k *KeepaliveCaller) HeardWithin(d time.Duration) bool {
	return time.Since(time.Unix(0, k.heard.Load())) < d
}

// handshakeRetry is how often a libsrt caller repeats a handshake packet.
const handshakeRetry = 250 * time.Millisecond

var errNoAnswer = errors.New("no handshake answer")

// DialKeepalive connects to addr with streamID: induction, then a
// conclusion with HSREQ and SID, each repeated every 250 ms until timeout.
func DialKeepalive(addr, streamID string, timeout time.Duration) (*KeepaliveCaller, time.Duration, error) {
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, 0, err
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		return nil, 0, err
	}
	k := &KeepaliveCaller{conn: c, socket: rand.Uint32() | 1, start: time.Now()}
	deadline := k.start.Add(timeout)
	ind := wire.AppendInduction(nil, k.socket, 0, 1500, 8192, [16]byte{}, 0)
	resp, err := k.exchange(ind, wire.HSInduction, deadline)
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("induction: %w", err)
	}
	resp, err = k.exchange(k.conclusion(resp.Cookie, streamID), wire.HSConclusion, deadline)
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("conclusion: %w", err)
	}
	took := time.Since(k.start)
	k.peer = resp.SocketID
	k.wg.Add(1)
	go k.idle()
	return k, took, nil
}

// exchange sends req until a handshake of type want (or a rejection)
// addressed to us comes back.
func (k *KeepaliveCaller) exchange(req []byte, want wire.HandshakeType, deadline time.Time) (wire.Handshake, error) {
	buf := make([]byte, wire.MaxDatagram)
	for time.Now().Before(deadline) {
		if _, err := k.conn.Write(req); err != nil {
			return wire.Handshake{}, err
		}
		retry := time.Now().Add(handshakeRetry)
		if retry.After(deadline) {
			retry = deadline
		}
		_ = k.conn.SetReadDeadline(retry)
		for {
			n, err := k.conn.Read(buf)
			if err != nil {
				break // resend
			}
			hs, err := wire.ParseHandshake(buf[:n])
			if err != nil || hs.Header.DestSocket != k.socket {
				continue
			}
			if hs.Type.IsRejection() {
				return hs, fmt.Errorf("rejected: %v", hs.Type)
			}
			if hs.Type == want {
				return hs, nil
			}
		}
	}
	return wire.Handshake{}, errNoAnswer
}

func (k *KeepaliveCaller) conclusion(cookie uint32, streamID string) []byte {
	hs := wire.Handshake{
		Header:     wire.Header{Control: true, Type: wire.CtrlHandshake, Timestamp: k.now()},
		Version:    5,
		ExtField:   wire.ExtFlagHSREQ | wire.ExtFlagCONFIG,
		ISN:        rand.Uint32() & 0x7FFFFFFF,
		MTU:        1500,
		FlowWindow: 8192,
		Type:       wire.HSConclusion,
		SocketID:   k.socket,
		Cookie:     cookie,
	}
	// HSREQ: SRT 1.5.0; TSBPDSND|TSBPDRCV|TLPKTDROP|PERIODICNAK|REXMITFLG;
	// 120 ms latency each way.
	ext := wire.AppendExtension(nil, wire.ExtHSREQ, []byte{0, 1, 5, 0, 0, 0, 0, 0x3B, 0, 120, 0, 120})
	hs.Extensions = wire.AppendExtension(ext, wire.ExtSID, wire.AppendStreamID(nil, streamID))
	return hs.Append(nil)
}

func (k *KeepaliveCaller) now() uint32 { return uint32(time.Since(k.start).Microseconds()) }

// idle sends a keepalive every second and drains what arrives, until Close.
func (k *KeepaliveCaller) idle() {
	defer k.wg.Done()
	buf := make([]byte, wire.MaxDatagram)
	next := time.Now().Add(keepaliveInterval)
	for {
		_ = k.conn.SetReadDeadline(next)
		_, err := k.conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil {
			k.heard.Store(time.Now().UnixNano())
		}
		if time.Now().After(next) {
			_, _ = k.conn.Write(appendKeepalive(nil, k.peer, k.now()))
			next = time.Now().Add(keepaliveInterval)
		}
	}
}

// Close sends a SHUTDOWN and closes the socket.
func (k *KeepaliveCaller) Close() {
	_, _ = k.conn.Write(wire.AppendShutdown(nil, k.peer, k.now()))
	k.conn.Close()
	k.wg.Wait()
}
