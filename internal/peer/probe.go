package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// probeSocket is the socket ID the probe's inductions come from.
const probeSocket = 0x2ead0001

// WaitSRT sends SRT inductions to addr until one is answered (a listener
// answers an induction without keeping any state), d passes, ctx ends, or
// gaveUp holds (the listener's process exited; nil: never).
func WaitSRT(ctx context.Context, addr string, d time.Duration, gaveUp func() bool) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	ind := wire.AppendInduction(nil, probeSocket, 0, 1500, 8192, wire.EncodePeerIP(ap.Addr()), 0)
	deadline := time.Now().Add(d)
	buf := make([]byte, wire.MaxDatagram)
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if gaveUp != nil && gaveUp() {
			return fmt.Errorf("nothing answers on %s: the process exited", addr)
		}
		if _, err := c.Write(ind); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && wire.AnswersInduction(buf[:n], probeSocket) {
			return nil
		}
	}
	return fmt.Errorf("no SRT listener answered on %s within %v", addr, d)
}
