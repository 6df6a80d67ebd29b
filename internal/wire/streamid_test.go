package wire

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStreamIDWireForm(t *testing.T) {
	for _, tc := range []struct {
		id, wire string
	}{
		{"", ""},
		{"h", "00000068"},
		{"hell", "6c6c6568"},
		{"hello", "6c6c6568 0000006f"}, // [wire], see SRT-WIRE.md
		{"#!::r=live/cam1,m=publish", "3a3a2123 696c3d72 632f6576 2c316d61 75703d6d 73696c62 00000068"}, // gosrt, testdata/captures/gosrt-plain.txt
		{"żółw", "b3c3bcc5 007782c5"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			want := unhex(t, tc.wire)
			got := AppendStreamID(nil, tc.id)
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendStreamID(%q) = %x, want %x", tc.id, got, want)
			}
			if back := DecodeStreamID(want); back != tc.id {
				t.Fatalf("DecodeStreamID(%x) = %q, want %q", want, back, tc.id)
			}
		})
	}
}

func TestStreamIDRoundTripLengths(t *testing.T) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789/#!:=,"
	lengths := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 511, 512}
	for _, n := range lengths {
		var sb strings.Builder
		for i := 0; i < n; i++ {
			sb.WriteByte(alphabet[i%len(alphabet)])
		}
		id := sb.String()
		body := AppendStreamID(nil, id)
		if len(body) != (n+3)/4*4 {
			t.Errorf("len %d: body is %d bytes, want %d", n, len(body), (n+3)/4*4)
		}
		if got := DecodeStreamID(body); got != id {
			t.Errorf("len %d: round trip = %q", n, got)
		}
		// Byte-exact re-encoding of what came off the wire.
		if again := AppendStreamID(nil, DecodeStreamID(body)); !bytes.Equal(again, body) {
			t.Errorf("len %d: re-encoded %x, want %x", n, again, body)
		}
		// Through a whole SID block and ParseConclusion.
		hs := Handshake{Extensions: sidBlock(id)}
		info, err := ParseConclusion(&hs)
		if err != nil || info.StreamID != id || !info.HasStreamID {
			t.Errorf("len %d: ParseConclusion = %+v, %v", n, info, err)
		}
	}
}

func TestStreamIDUTF8(t *testing.T) {
	for _, id := range []string{
		"ü",                      // 2 bytes
		"€",                      // 3 bytes
		"😀",                      // 4 bytes, one whole word
		"a😀",                     // a rune split across words
		"#!::r=straße/żółw,u=日本", // mixed
		strings.Repeat("😀", 128), // 512 bytes
	} {
		if !utf8.ValidString(id) {
			t.Fatalf("bad test input %q", id)
		}
		body := AppendStreamID(nil, id)
		got := DecodeStreamID(body)
		if got != id {
			t.Errorf("round trip of %q = %q", id, got)
		}
		if again := AppendStreamID(nil, got); !bytes.Equal(again, body) {
			t.Errorf("re-encoding %q is not byte-exact", id)
		}
	}
}

func TestDecodeStreamIDMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"trailing partial word, read as NUL-padded", "6c6c6568 006f", "hell\x00\x00o"},
		{"only padding", "00000000 00000000", ""},
		{"extra NUL words after the ID", "6c6c6568 0000006f 00000000", "hello"},
		{"NUL inside the ID", "6c006568 0000006f", "he\x00lo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := DecodeStreamID(unhex(t, tc.body)); got != tc.want {
				t.Fatalf("DecodeStreamID(%s) = %q, want %q", tc.body, got, tc.want)
			}
		})
	}
}
