//go:build !linux

package session

import (
	"errors"
	"net"
)

// ListenShared is only implemented on Linux.
func ListenShared(net.Addr) (*net.UDPConn, error) { return nil, errors.ErrUnsupported }
