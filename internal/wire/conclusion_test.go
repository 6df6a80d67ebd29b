package wire

import (
	"errors"
	"testing"
)

// Every real caller's conclusion in the captures passes.
func TestCheckCallerConclusionCaptures(t *testing.T) {
	n := 0
	for _, c := range loadCaptures(t) {
		for i, d := range c.Datagrams {
			hs, err := ParseHandshake(d.Bytes)
			if err != nil || !d.FromCaller || hs.Type != HSConclusion {
				continue
			}
			n++
			if err := CheckCallerConclusion(&hs); err != nil {
				t.Errorf("%s datagram %d: %v", c.Name, i, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no caller conclusions in the captures")
	}
}

func TestCheckCallerConclusion(t *testing.T) {
	hsreq := AppendExtension(nil, ExtHSREQ, []byte{0, 1, 5, 0, 0, 0, 0, 0x3B, 0, 120, 0, 120})
	sid := AppendExtension(nil, ExtSID, AppendStreamID(nil, "live/x"))
	km := AppendExtension(nil, ExtKMREQ, capKMREQ(t))
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	cases := []struct {
		name     string
		extField uint16
		enc      uint16
		ext      []byte
		ok       bool
	}{
		{"HSREQ and SID", ExtFlagHSREQ | ExtFlagCONFIG, 0, cat(hsreq, sid), true},
		{"with KMREQ", ExtFlagHSREQ | ExtFlagKMREQ | ExtFlagCONFIG, 2, cat(hsreq, km, sid), true},
		{"KMREQ, encryption field 0", ExtFlagHSREQ | ExtFlagKMREQ, 0, cat(hsreq, km), true},
		{"no extensions", 0, 0, nil, false},
		{"HSREQ of 16 bytes", ExtFlagHSREQ, 0, AppendExtension(nil, ExtHSREQ, make([]byte, 16)), false},
		{"HSREQ of 8 bytes", ExtFlagHSREQ, 0, AppendExtension(nil, ExtHSREQ, make([]byte, 8)), false},
		{"two HSREQs", ExtFlagHSREQ, 0, cat(hsreq, hsreq), false},
		{"HSREQ not announced", ExtFlagCONFIG, 0, cat(hsreq, sid), false},
		{"HSRSP in a request", ExtFlagHSREQ, 0, cat(hsreq, AppendExtension(nil, ExtHSRSP, make([]byte, 12))), false},
		{"unknown type", ExtFlagHSREQ, 0, cat(hsreq, AppendExtension(nil, 99, make([]byte, 4))), false},
		{"KMREQ not announced", ExtFlagHSREQ, 0, cat(hsreq, km), false},
		{"KMREQ announced, absent", ExtFlagHSREQ | ExtFlagKMREQ, 0, hsreq, false},
		{"KMREQ lying key length", ExtFlagHSREQ | ExtFlagKMREQ, 0, cat(hsreq, AppendExtension(nil, ExtKMREQ, append(capKMREQ(t)[:15:15], 0x3f))), false},
		{"AES-256 field, AES-128 key", ExtFlagHSREQ | ExtFlagKMREQ, 4, cat(hsreq, km), false},
		{"long congestion block", ExtFlagHSREQ | ExtFlagCONFIG, 0, cat(hsreq, AppendExtension(nil, ExtCongestion, []byte("livelive"))), false},
		{"unknown flag", ExtFlagHSREQ | 0x10, 0, hsreq, false},
	}
	for _, c := range cases {
		hs := Handshake{Version: 5, Type: HSConclusion, ExtField: c.extField, Encryption: c.enc, Extensions: c.ext}
		err := CheckCallerConclusion(&hs)
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, ErrExtension) {
			t.Errorf("%s: got %v, want ErrExtension", c.name, err)
		}
	}
}

func FuzzCheckCallerConclusion(f *testing.F) {
	for _, c := range loadCaptures(f) {
		for _, d := range c.Datagrams {
			if d.FromCaller {
				f.Add(d.Bytes)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := ParseHandshake(b)
		if err != nil {
			return
		}
		if _, err := ParseConclusion(&hs); err != nil {
			return
		}
		if CheckCallerConclusion(&hs) == nil && hs.Version == 5 && hs.Type == HSConclusion && hs.ExtField&ExtFlagHSREQ == 0 {
			t.Fatalf("accepted a conclusion without HSREQ: %x", b)
		}
	})
}
