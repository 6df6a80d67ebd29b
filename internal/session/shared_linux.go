package session

import (
	"context"
	"fmt"
	"net"
)

// ListenShared opens an unconnected UDP socket on local with SO_REUSEPORT,
// beside the sessions' sockets on the same port: while the process stops,
// Caddy's listener is gone, and this one answers the callers that are
// not in a session.
func ListenShared(local net.Addr) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: reusePort}
	c, err := lc.ListenPacket(context.Background(), "udp", local.String())
	if err != nil {
		return nil, fmt.Errorf("shared socket on %s: %w", local, err)
	}
	return c.(*net.UDPConn), nil
}
