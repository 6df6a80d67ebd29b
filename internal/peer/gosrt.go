package peer

import (
	"time"

	srt "github.com/datarhei/gosrt"
)

// DialOptions tune a gosrt caller.
type DialOptions struct {
	Passphrase string
	// Timeout is the connect timeout (gosrt's default is 3 s).
	Timeout time.Duration
}

// Dial connects a gosrt caller to addr with the given stream ID.
func Dial(addr, streamID string, o DialOptions) (srt.Conn, error) {
	cfg := srt.DefaultConfig()
	cfg.StreamId = streamID
	if o.Passphrase != "" {
		cfg.Passphrase = o.Passphrase
	}
	if o.Timeout > 0 {
		cfg.ConnectionTimeout = o.Timeout
	}
	return srt.Dial("srt", addr, cfg)
}
