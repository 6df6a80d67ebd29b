package wire

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/srtroute/caddy-l4-srt/internal/wire/wiretest"
)

// captureStreamIDs is the stream ID each capture's caller sent.
var captureStreamIDs = map[string]string{
	"ffmpeg-to-libsrt":             "#!::r=live/ffmpeg,m=publish",
	"gosrt-passphrase":             "live/secure",
	"gosrt-plain":                  "#!::r=live/cam1,m=publish",
	"gosrt-rejected":               "#!::u=mallory,r=live/x",
	"gosrt-utf8-to-libsrt":         "#!::h=żółw.example/app/straße,m=publish,x-key=a=b",
	"libsrt-conclusion-retransmit": "live/retry",
	"libsrt-passphrase":            "hello",
	"libsrt-plain":                 "#!::h=vhost/app/stream,m=publish",
	"libsrt-rejected-by-gosrt":     "#!::r=live/denied",
}

func loadCaptures(t testing.TB) []*wiretest.Capture {
	t.Helper()
	caps, err := wiretest.LoadDir("testdata/captures")
	if err != nil {
		t.Fatal(err)
	}
	if len(caps) == 0 {
		t.Fatal("no captures in testdata/captures")
	}
	return caps
}

// TestCapturedDatagrams parses every captured datagram, re-encodes it and
// compares byte-exact, and checks the handshake facts of SRT-WIRE.md on
// the real peers' packets.
func TestCapturedDatagrams(t *testing.T) {
	for _, c := range loadCaptures(t) {
		t.Run(c.Name, func(t *testing.T) {
			wantSID, known := captureStreamIDs[c.Name]
			if !known {
				t.Fatalf("capture %s has no expected stream ID in captureStreamIDs", c.Name)
			}
			var callerID uint32
			var cookie uint32
			sawSID := false
			for i, d := range c.Datagrams {
				h, err := ParseHeader(d.Bytes)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if out := h.Append(nil); !bytes.Equal(out, d.Bytes[:HeaderLen]) {
					t.Errorf("datagram %d: header re-encodes as %x, want %x", i, out, d.Bytes[:HeaderLen])
				}
				if !h.Control || h.Type != CtrlHandshake {
					if _, err := ParseHandshake(d.Bytes); err == nil {
						t.Errorf("datagram %d: %v parsed as a handshake", i, h.Type)
					}
					continue
				}
				hs, err := ParseHandshake(d.Bytes)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if out := hs.Append(nil); !bytes.Equal(out, d.Bytes) {
					t.Errorf("datagram %d: handshake re-encodes as\n %x\nwant\n %x", i, out, d.Bytes)
				}
				if got := DecodePeerIP(hs.PeerIP); got != netip.MustParseAddr("127.0.0.1") {
					t.Errorf("datagram %d: peer IP %v", i, got)
				}
				switch {
				case d.FromCaller && hs.Type == HSInduction:
					callerID = hs.SocketID
					if len(d.Bytes) != HandshakeLen || hs.Header.DestSocket != 0 || hs.Version != 4 || hs.ExtField != 2 || hs.Cookie != 0 {
						t.Errorf("datagram %d: caller induction %+v", i, hs)
					}
				case !d.FromCaller && hs.Type == HSInduction:
					cookie = hs.Cookie
					if len(d.Bytes) != HandshakeLen || hs.Header.DestSocket != callerID || hs.SocketID != callerID ||
						hs.Version != 5 || hs.ExtField != Magic || hs.Cookie == 0 {
						t.Errorf("datagram %d: induction response %+v (caller %#x)", i, hs, callerID)
					}
				case d.FromCaller && hs.Type == HSConclusion:
					if hs.Header.DestSocket != 0 || hs.Version != 5 || hs.Cookie != cookie || hs.SocketID != callerID {
						t.Errorf("datagram %d: caller conclusion %+v", i, hs)
					}
					if hs.ExtField&ExtFlagHSREQ == 0 || hs.ExtField&ExtFlagCONFIG == 0 {
						t.Errorf("datagram %d: extension field %#x", i, hs.ExtField)
					}
					checkCapturedSID(t, i, &hs, wantSID)
					sawSID = true
				case !d.FromCaller:
					// Conclusion response or rejection.
					if hs.Header.DestSocket != callerID {
						t.Errorf("datagram %d: %v addressed to %#x, not to the caller %#x", i, hs.Type, hs.Header.DestSocket, callerID)
					}
					if _, err := ParseConclusion(&hs); err != nil {
						t.Errorf("datagram %d: listener's extensions: %v", i, err)
					}
				}
			}
			if !sawSID {
				t.Error("no caller conclusion in the capture")
			}
		})
	}
}

// checkCapturedSID decodes the stream ID of a captured conclusion and
// re-encodes it byte-exact.
func checkCapturedSID(t *testing.T, i int, hs *Handshake, want string) {
	t.Helper()
	info, err := ParseConclusion(hs)
	if err != nil {
		t.Fatalf("datagram %d: %v", i, err)
	}
	if !info.HasStreamID || info.StreamID != want {
		t.Errorf("datagram %d: stream ID %q, want %q", i, info.StreamID, want)
	}
	if info.Encrypted != (hs.ExtField&ExtFlagKMREQ != 0) {
		t.Errorf("datagram %d: Encrypted = %v with extension field %#x", i, info.Encrypted, hs.ExtField)
	}
	for rest := hs.Extensions; ; {
		ext, r, ok, err := NextExtension(rest)
		if err != nil || !ok {
			break
		}
		rest = r
		if ext.Type == ExtSID {
			if again := AppendStreamID(nil, info.StreamID); !bytes.Equal(again, ext.Body) {
				t.Errorf("datagram %d: SID re-encodes as %x, want %x", i, again, ext.Body)
			}
		}
	}
}
