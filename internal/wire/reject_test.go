package wire

import (
	"bytes"
	"strconv"
	"testing"
)

func TestAppendRejection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    string
		reason RejectReason
	}{
		{"gosrt conclusion, forbidden", capConclusion, RejXForbidden},
		{"libsrt conclusion with KMREQ, bad secret", capConclusionKM, RejBadSecret},
		{"bare induction, not found", capInduction, RejXNotFound},
		{"user-defined reason", capConclusion, 2000},
		{"largest reason", capConclusion, MaxRejectReason},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := unhex(t, tc.req)
			req, err := ParseHandshake(b)
			if err != nil {
				t.Fatal(err)
			}
			out := AppendRejection(nil, &req, tc.reason, 0x1234)
			if len(out) != HandshakeLen {
				t.Fatalf("rejection is %d bytes, want %d", len(out), HandshakeLen)
			}
			if len(out) > len(b) {
				t.Fatalf("rejection (%d bytes) larger than the request (%d)", len(out), len(b))
			}
			rej, err := ParseHandshake(out)
			if err != nil {
				t.Fatal(err)
			}
			if rej.Type != HandshakeType(uint32(tc.reason)+1000) || !rej.Type.IsRejection() || rej.Type.Reason() != tc.reason {
				t.Errorf("type = %d (%v), want %d", uint32(rej.Type), rej.Type, uint32(tc.reason)+1000)
			}
			if rej.Header.DestSocket != req.SocketID {
				t.Errorf("dest = %#x, want the requester's socket %#x", rej.Header.DestSocket, req.SocketID)
			}
			if rej.Header.Timestamp != 0x1234 {
				t.Errorf("timestamp = %#x", rej.Header.Timestamp)
			}
			if len(rej.Extensions) != 0 {
				t.Errorf("rejection carries %d bytes of extensions", len(rej.Extensions))
			}
			// The rest of the CIF echoes the request.
			if rej.Version != req.Version || rej.ISN != req.ISN || rej.SocketID != req.SocketID || rej.Cookie != req.Cookie || rej.PeerIP != req.PeerIP {
				t.Errorf("rejection does not echo the request: %+v", rej)
			}
			// Appending keeps what dst held.
			pre := []byte("prefix")
			if out := AppendRejection(pre, &req, tc.reason, 0); !bytes.HasPrefix(out, []byte("prefix")) || len(out) != len(pre)+HandshakeLen {
				t.Errorf("AppendRejection to non-empty dst = %x", out)
			}
		})
	}
}

func TestAppendInductionResponse(t *testing.T) {
	b := unhex(t, capInduction)
	req, err := ParseHandshake(b)
	if err != nil {
		t.Fatal(err)
	}
	out := AppendInductionResponse(nil, &req, 0x40da6b79, 0x546)
	// What the gosrt listener answered to this very induction.
	if want := unhex(t, capInductionResponse); !bytes.Equal(out, want) {
		t.Fatalf("AppendInductionResponse =\n %x\nwant\n %x", out, want)
	}
	// Extensions in the request are not echoed.
	long := append(append([]byte(nil), b...), 0, 5, 0, 1, 1, 2, 3, 4)
	req, _ = ParseHandshake(long)
	if out := AppendInductionResponse(nil, &req, 1, 0); len(out) != HandshakeLen {
		t.Fatalf("induction response to a %d-byte request is %d bytes", len(long), len(out))
	}
}

func TestAppendInduction(t *testing.T) {
	out := AppendInduction(nil, 0x3dd6eb55, 0, 1500, 0x6400, loopbackPeer, 0xc)
	// What gosrt sent (gosrt sends ISN 0 in the induction).
	if want := unhex(t, capInduction); !bytes.Equal(out, want) {
		t.Fatalf("AppendInduction =\n %x\nwant\n %x", out, want)
	}
}

func TestParseRejectReason(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want RejectReason
		ok   bool
	}{
		{"bad_request", RejXBadRequest, true},
		{"unauthorized", RejXUnauthorized, true},
		{"overload", RejXOverload, true},
		{"forbidden", RejXForbidden, true},
		{"not_found", RejXNotFound, true},
		{"bad_mode", RejXBadMode, true},
		{"unacceptable", RejXUnacceptable, true},
		{"conflict", RejXConflict, true},
		{"internal_error", RejXInternalError, true},
		{"unimplemented", RejXUnimplemented, true},
		{"gateway", RejXGateway, true},
		{"down", RejXDown, true},
		{"1000", 1000, true},
		{"1403", RejXForbidden, true},
		{"2000", 2000, true},
		{"4294966292", MaxRejectReason, true},
		{"4294966293", 0, false}, // would be HSDone on the wire
		{"4294967295", 0, false},
		{"4294967296", 0, false},
		{"999", 0, false},
		{"0", 0, false},
		{"2", 0, false}, // SRT_REJ_PEER is libsrt's own, not configurable
		{"-1403", 0, false},
		{"+1403", 0, false},
		{"0x57b", 0, false},
		{" 1403", 0, false},
		{"1_403", 0, false},
		{"Forbidden", 0, false},
		{"peer", 0, false},
		{"", 0, false},
	} {
		got, err := ParseRejectReason(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRejectReason(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			typ := got.HandshakeType()
			if !typ.IsRejection() || typ.Reason() != got {
				t.Errorf("%q: wire type %d does not carry the reason back", tc.in, uint32(typ))
			}
		}
	}
}

func TestRejectReasonString(t *testing.T) {
	for r, want := range map[RejectReason]string{
		RejUnknown: "unknown", RejPeer: "peer", RejRogue: "rogue", RejVersion: "version",
		RejBadSecret: "badsecret", RejUnsecure: "unsecure", RejTimeout: "timeout", 17: "crypto",
		18: "18", 999: "999", 1000: "1000",
		RejXBadRequest: "bad_request", RejXForbidden: "forbidden", RejXNotFound: "not_found", RejXDown: "down",
		2403: "2403",
	} {
		if got := r.String(); got != want {
			t.Errorf("RejectReason(%d).String() = %q, want %q", r, got, want)
		}
	}
	// Every configurable name reads back to its own reason.
	for name, r := range rejectNames {
		if r.String() != name {
			t.Errorf("%s.String() = %q", name, r.String())
		}
		if got, err := ParseRejectReason(strconv.FormatUint(uint64(r), 10)); err != nil || got != r {
			t.Errorf("ParseRejectReason(%d) = %d, %v", r, got, err)
		}
	}
}
