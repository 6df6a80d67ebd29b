package testpeer

import (
	"errors"
	"regexp"
	"strconv"

	srt "github.com/datarhei/gosrt"
	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// DialOptions tune a gosrt caller.
type DialOptions = peer.DialOptions

// Dial connects a gosrt caller to addr with the given stream ID.
func Dial(addr, streamID string, o DialOptions) (srt.Conn, error) {
	return peer.Dial(addr, streamID, o)
}

var rejectRe = regexp.MustCompile(`connection rejected: REJECT \(([0-9a-v]+)\)`)

// RejectReason extracts the rejection reason from a gosrt Dial error, in
// libsrt's API numbering (what srt_getrejectreason() would return: the
// wire value minus 1000). gosrt prints unknown handshake types in base 32.
func RejectReason(err error) (uint32, bool) {
	if err == nil {
		return 0, false
	}
	m := rejectRe.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	wire, perr := strconv.ParseUint(m[1], 32, 32)
	if perr != nil || wire < 1000 {
		return 0, false
	}
	return uint32(wire) - 1000, true
}

// ErrNoTool reports a missing external peer.
var ErrNoTool = errors.New("tool not installed")
