package wire

import (
	"fmt"
	"strconv"
)

// RejectReason is a connection rejection reason in libsrt's API numbering:
// the value a caller's srt_getrejectreason() returns. 0–999 are libsrt's
// own SRT_REJ_* reasons, 1000–1999 the HTTP-like SRT_REJX_* codes and
// 2000 and above are application-defined. On the wire a rejection
// handshake carries the reason plus 1000.
type RejectReason uint32

// Reasons the relay sends or inspects.
const (
	RejUnknown   RejectReason = 0
	RejPeer      RejectReason = 2
	RejRogue     RejectReason = 4
	RejVersion   RejectReason = 8
	RejBadSecret RejectReason = 10
	RejUnsecure  RejectReason = 11
	RejTimeout   RejectReason = 16

	RejXBadRequest    RejectReason = 1400
	RejXUnauthorized  RejectReason = 1401
	RejXOverload      RejectReason = 1402
	RejXForbidden     RejectReason = 1403
	RejXNotFound      RejectReason = 1404
	RejXBadMode       RejectReason = 1405
	RejXUnacceptable  RejectReason = 1406
	RejXConflict      RejectReason = 1409
	RejXInternalError RejectReason = 1500
	RejXUnimplemented RejectReason = 1501
	RejXGateway       RejectReason = 1502
	RejXDown          RejectReason = 1503
)

// MaxRejectReason is the largest reason that still fits below the
// reserved handshake types on the wire.
const MaxRejectReason = RejectReason(uint32(HSDone) - 1001)

var internalReasonNames = [...]string{
	"unknown", "system", "peer", "resource", "rogue", "backlog", "ipe", "close",
	"version", "rdvcookie", "badsecret", "unsecure", "messageapi", "congestion",
	"filter", "group", "timeout", "crypto",
}

// rejectNames are the names a configuration may use for SRT_REJX_* codes.
var rejectNames = map[string]RejectReason{
	"bad_request":    RejXBadRequest,
	"unauthorized":   RejXUnauthorized,
	"overload":       RejXOverload,
	"forbidden":      RejXForbidden,
	"not_found":      RejXNotFound,
	"bad_mode":       RejXBadMode,
	"unacceptable":   RejXUnacceptable,
	"conflict":       RejXConflict,
	"internal_error": RejXInternalError,
	"unimplemented":  RejXUnimplemented,
	"gateway":        RejXGateway,
	"down":           RejXDown,
}

// ParseRejectReason reads a configured rejection: one of the names above
// or a number of 1000 or more (SRT_REJX_* or application-defined).
func ParseRejectReason(s string) (RejectReason, error) {
	if r, ok := rejectNames[s]; ok {
		return r, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("rejection %q: want a name (bad_request, unauthorized, overload, forbidden, not_found, bad_mode, unacceptable, conflict, internal_error, unimplemented, gateway, down) or a number from 1000", s)
	}
	if n < 1000 || RejectReason(n) > MaxRejectReason {
		return 0, fmt.Errorf("rejection %q: numbers must be from 1000 (SRT_REJX_*) or 2000 (user-defined) up to %d", s, MaxRejectReason)
	}
	return RejectReason(n), nil
}

// HandshakeType is the on-wire handshake type that carries r.
func (r RejectReason) HandshakeType() HandshakeType { return HandshakeType(r + 1000) }

func (r RejectReason) String() string {
	if int(r) < len(internalReasonNames) {
		return internalReasonNames[r]
	}
	for name, v := range rejectNames {
		if v == r {
			return name
		}
	}
	return strconv.FormatUint(uint64(r), 10)
}

// AppendRejection appends the rejection a listener sends for the request
// req: the request's CIF without extensions, addressed to the requesting
// socket, with the handshake type carrying reason. It is never larger than
// the request it answers.
func AppendRejection(dst []byte, req *Handshake, reason RejectReason, timestamp uint32) []byte {
	rej := *req
	rej.Header = Header{Control: true, Type: CtrlHandshake, Timestamp: timestamp, DestSocket: req.SocketID}
	rej.Type = reason.HandshakeType()
	rej.Extensions = nil
	return rej.AppendCIF(dst)
}

// AppendInductionResponse appends a listener's answer to the caller
// induction req as libsrt builds it: the request with version 5, the SRT
// magic, no key length advertised, the cookie set, and everything else
// echoed (the caller's socket ID and the peer IP field included). It is
// the size of a bare induction, never larger than the request.
func AppendInductionResponse(dst []byte, req *Handshake, cookie uint32, timestamp uint32) []byte {
	resp := *req
	resp.Header = Header{Control: true, Type: CtrlHandshake, Timestamp: timestamp, DestSocket: req.SocketID}
	resp.Version = 5
	resp.Encryption = 0
	resp.ExtField = Magic
	resp.Type = HSInduction
	resp.Cookie = cookie
	resp.Extensions = nil
	return resp.AppendCIF(dst)
}

// AppendInduction appends a caller induction as libsrt sends it: version 4,
// extension field 2 (UDT_DGRAM), destination socket 0, no cookie.
func AppendInduction(dst []byte, socketID, isn, mtu, flowWindow uint32, peer [16]byte, timestamp uint32) []byte {
	hs := Handshake{
		Header:     Header{Control: true, Type: CtrlHandshake, Timestamp: timestamp},
		Version:    4,
		ExtField:   2,
		ISN:        isn,
		MTU:        mtu,
		FlowWindow: flowWindow,
		Type:       HSInduction,
		SocketID:   socketID,
		PeerIP:     peer,
	}
	return hs.AppendCIF(dst)
}

// Known reports whether r is one of libsrt's own reasons or a named
// SRT_REJX_* code: the set a metric label may take without growing with
// what peers send.
func (r RejectReason) Known() bool {
	if int(r) < len(internalReasonNames) {
		return true
	}
	for _, n := range rejectNames {
		if n == r {
			return true
		}
	}
	return false
}
