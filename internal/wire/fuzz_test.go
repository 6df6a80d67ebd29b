package wire

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"testing"

	"github.com/srtroute/caddy-l4-srt/internal/wire/wiretest"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite the capture-derived seeds in testdata/fuzz from testdata/captures")

// TestWriteSeedCorpus regenerates the seed corpora from the captures:
//
//	go test ./internal/wire -run TestWriteSeedCorpus -write-corpus
func TestWriteSeedCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to rewrite testdata/fuzz")
	}
	kinds := map[string]bool{}
	seen := map[string]bool{} // target + dedup key
	for _, c := range loadCaptures(t) {
		for i, d := range c.Datagrams {
			name := fmt.Sprintf("%s-%02d", c.Name, i)
			writeOnce := func(target, key string, args ...any) {
				if seen[target+"\x00"+key] {
					return
				}
				seen[target+"\x00"+key] = true
				if err := wiretest.WriteFuzzSeed(target, name, args...); err != nil {
					t.Fatal(err)
				}
			}
			write := func(target string, arg []byte) { writeOnce(target, string(arg), arg) }
			// FuzzParseHeader: one datagram of every kind across all captures.
			kind := "data"
			if IsControl(d.Bytes) {
				kind = ControlTypeOf(d.Bytes).String()
			}
			if !kinds[kind] {
				kinds[kind] = true
				write("FuzzParseHeader", d.Bytes)
			}
			hs, err := ParseHandshake(d.Bytes)
			if err != nil {
				continue
			}
			// One handshake of each type per direction and capture.
			writeOnce("FuzzParseHandshake", fmt.Sprint(c.Name, d.FromCaller, hs.Type), d.Bytes)
			if len(hs.Extensions) == 0 {
				continue
			}
			write("FuzzParseConclusion", []byte(hs.Extensions))
			for rest := hs.Extensions; ; {
				ext, r, ok, err := NextExtension(rest)
				if err != nil || !ok {
					break
				}
				rest = r
				if ext.Type == ExtSID && d.FromCaller {
					write("FuzzDecodeStreamID", []byte(ext.Body))
				}
			}
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendShutdown(nil, 0x12345678, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if len(b) < HeaderLen {
			if !errors.Is(err, ErrShort) {
				t.Fatalf("%d bytes: error %v, want ErrShort", len(b), err)
			}
			if IsControl(b) || ControlTypeOf(b) != 0 || DestSocketOf(b) != 0 || IsShutdown(b) {
				t.Fatal("field helpers read a short datagram")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if out := h.Append(nil); !bytes.Equal(out, b[:HeaderLen]) {
			t.Fatalf("round trip %x -> %+v -> %x", b[:HeaderLen], h, out)
		}
		if IsControl(b) != h.Control || DestSocketOf(b) != h.DestSocket {
			t.Fatal("field helpers disagree with ParseHeader")
		}
		if h.Control {
			if ControlTypeOf(b) != h.Type || IsShutdown(b) != (h.Type == CtrlShutdown) || h.Seq != 0 {
				t.Fatal("control fields disagree")
			}
		} else if h.Type != 0 || h.Subtype != 0 || h.Seq > 0x7fffffff || IsShutdown(b) {
			t.Fatal("data packet with control fields")
		}
		c := append([]byte(nil), b...)
		SetDestSocket(c, ^h.DestSocket)
		if DestSocketOf(c) != ^h.DestSocket || !bytes.Equal(c[:12], b[:12]) || !bytes.Equal(c[HeaderLen:], b[HeaderLen:]) {
			t.Fatal("SetDestSocket touched other bytes")
		}
	})
}

func FuzzParseHandshake(f *testing.F) {
	f.Add(AppendInduction(nil, 1, 2, 1500, 8192, loopbackPeer, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := append([]byte(nil), b...)
		hs, err := ParseHandshake(b)
		typ, typOK := HandshakeTypeOf(b)
		if err != nil {
			if typOK {
				t.Fatalf("HandshakeTypeOf accepted what ParseHandshake refused (%v)", err)
			}
			if !errors.Is(err, ErrShort) && !errors.Is(err, ErrNotHandshake) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !bytes.Equal(b, orig) {
			t.Fatal("ParseHandshake modified its input")
		}
		if len(b) < HandshakeLen || !typOK || typ != hs.Type {
			t.Fatalf("accepted %d bytes; HandshakeTypeOf = %v, %v", len(b), typ, typOK)
		}
		if len(hs.Extensions) != len(b)-HandshakeLen {
			t.Fatalf("Extensions is %d bytes of %d", len(hs.Extensions), len(b))
		}
		if out := hs.Append(nil); !bytes.Equal(out, b) {
			t.Fatalf("round trip:\n %x\n %x", b, out)
		}

		// Answers built from it are never larger than it.
		rej := AppendRejection(nil, &hs, RejXForbidden, 7)
		if len(rej) != HandshakeLen || len(rej) > len(b) || DestSocketOf(rej) != hs.SocketID {
			t.Fatalf("rejection: %d bytes, dest %#x", len(rej), DestSocketOf(rej))
		}
		if rt, _ := HandshakeTypeOf(rej); rt.Reason() != RejXForbidden {
			t.Fatalf("rejection type %v", rt)
		}
		if resp := AppendInductionResponse(nil, &hs, 9, 7); len(resp) != HandshakeLen || DestSocketOf(resp) != hs.SocketID {
			t.Fatal("induction response is not a bare handshake to the requester")
		}

		// Each setter changes its own field and nothing else.
		c := append([]byte(nil), b...)
		SetCookie(c, ^hs.Cookie)
		SetSocketID(c, ^hs.SocketID)
		ip := netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 15: 1})
		SetPeerIP(c, ip)
		got, err := ParseHandshake(c)
		if err != nil {
			t.Fatal(err)
		}
		if got.Cookie != ^hs.Cookie || got.SocketID != ^hs.SocketID || DecodePeerIP(got.PeerIP) != ip {
			t.Fatal("setters did not set")
		}
		got.Cookie, got.SocketID, got.PeerIP = hs.Cookie, hs.SocketID, hs.PeerIP
		if out := got.Append(nil); !bytes.Equal(out, b) {
			t.Fatal("setters changed other fields")
		}

		// Decoding a peer IP field and re-encoding it is stable after one
		// round (the first may drop the ambiguity of an IPv6 address with
		// 96 zero low bits, which reads as IPv4).
		if a := DecodePeerIP(hs.PeerIP); EncodePeerIP(DecodePeerIP(EncodePeerIP(a))) != EncodePeerIP(a) {
			t.Fatalf("peer IP %v does not re-encode stably", a)
		}

		_, _ = ParseConclusion(&hs)
		_ = hs.Type.String()
	})
}

// walkExtensions is an independent reading of the extension region: the
// blocks, or the offset at which it stops making sense.
func walkExtensions(b []byte) (types []uint16, bodies [][]byte, bad bool) {
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return types, bodies, true
		}
		n := (int(b[off+2])<<8 | int(b[off+3])) * 4
		if off+4+n > len(b) {
			return types, bodies, true
		}
		types = append(types, uint16(b[off])<<8|uint16(b[off+1]))
		bodies = append(bodies, b[off+4:off+4+n])
		off += 4 + n
	}
	return types, bodies, false
}

func FuzzParseConclusion(f *testing.F) {
	f.Add([]byte{})
	f.Add(cat(sidBlock("hello"), AppendExtension(nil, ExtKMREQ, make([]byte, 8))))
	f.Add(cat(sidBlock("a"), sidBlock("a")))
	f.Add(unhex(f, "0005ffff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		types, bodies, bad := walkExtensions(b)

		// NextExtension agrees with the reference walk, block by block.
		rest := b
		for i := 0; ; i++ {
			ext, r, ok, err := NextExtension(rest)
			if err != nil {
				if !bad || i != len(types) || !errors.Is(err, ErrExtension) {
					t.Fatalf("block %d: unexpected error %v", i, err)
				}
				break
			}
			if !ok {
				if bad || i != len(types) || len(rest) != 0 {
					t.Fatalf("ended after %d blocks, reference has %d (bad %v)", i, len(types), bad)
				}
				break
			}
			if i >= len(types) || ext.Type != types[i] || !bytes.Equal(ext.Body, bodies[i]) {
				t.Fatalf("block %d differs from the reference", i)
			}
			if len(r) != len(rest)-4-len(ext.Body) {
				t.Fatalf("block %d: rest does not advance", i)
			}
			rest = r
		}

		// ParseConclusion: every error is one of ours; a stream ID is only
		// reported when a SID block was there, never over 512 bytes.
		hs := Handshake{Extensions: b}
		info, err := ParseConclusion(&hs)
		sids := 0
		km := false
		shortHS := false // an HSREQ or HSRSP under three words: refused
		for i, typ := range types {
			switch typ {
			case ExtHSREQ, ExtHSRSP:
				shortHS = shortHS || len(bodies[i]) < 12
			case ExtSID:
				sids++
				if sids == 1 && len(bodies[i]) <= MaxStreamIDLen && err == nil {
					if info.StreamID != DecodeStreamID(bodies[i]) {
						t.Fatalf("stream ID %q, block decodes as %q", info.StreamID, DecodeStreamID(bodies[i]))
					}
				}
			case ExtKMREQ:
				km = true
			}
		}
		if err != nil {
			if !errors.Is(err, ErrExtension) && !errors.Is(err, ErrStreamIDTooLong) {
				t.Fatalf("unexpected error %v", err)
			}
			if !bad && sids < 2 && !shortHS && !errors.Is(err, ErrStreamIDTooLong) {
				t.Fatalf("error %v for a well-formed region", err)
			}
			return
		}
		if bad || sids > 1 || shortHS {
			t.Fatalf("accepted a malformed region (bad %v, %d SID blocks, short HSREQ/HSRSP %v)", bad, sids, shortHS)
		}
		if info.HasStreamID != (sids == 1) || info.Encrypted != km || len(info.StreamID) > MaxStreamIDLen {
			t.Fatalf("info %+v; %d SID blocks, KMREQ %v", info, sids, km)
		}
	})
}

func FuzzDecodeStreamID(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendStreamID(nil, "hello"))
	f.Add([]byte("\x00\x00\x00o\x00\x00\x00\x00"))
	f.Add([]byte{1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, body []byte) {
		s := DecodeStreamID(body)
		padded := append(append([]byte(nil), body...), make([]byte, (4-len(body)%4)%4)...)
		if len(s) > len(padded) || (len(s) > 0 && s[len(s)-1] == 0) {
			t.Fatalf("decoded %q from %d bytes", s, len(body))
		}
		enc := AppendStreamID(nil, s)
		if len(enc) != (len(s)+3)/4*4 {
			t.Fatalf("encoding of %d bytes is %d bytes", len(s), len(enc))
		}
		// encode(decode(x)) is x up to the trailing NUL padding it dropped.
		if !bytes.Equal(enc, padded[:len(enc)]) {
			t.Fatalf("re-encoding %x gives %x", body, enc)
		}
		for _, c := range padded[len(enc):] {
			if c != 0 {
				t.Fatalf("decoding %x dropped a non-NUL byte", body)
			}
		}
		// decode is stable on its own output.
		if again := DecodeStreamID(enc); again != s {
			t.Fatalf("decode(encode(%q)) = %q", s, again)
		}
		// Read as an ID: encode then decode is the identity up to trailing NULs.
		id := string(body)
		trimmed := id
		for len(trimmed) > 0 && trimmed[len(trimmed)-1] == 0 {
			trimmed = trimmed[:len(trimmed)-1]
		}
		if got := DecodeStreamID(AppendStreamID(nil, id)); got != trimmed {
			t.Fatalf("decode(encode(%q)) = %q", id, got)
		}
	})
}
