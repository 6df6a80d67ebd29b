package wire

// SRT carries the stream ID as UTF-8 padded with NULs to whole 32-bit words,
// and, because libsrt byte-swaps every CIF word on the way out, each 4-byte
// word arrives byte-reversed: "hello" is 6c 6c 65 68 00 00 00 6f.

// DecodeStreamID decodes the body of a SID extension block. A trailing
// partial word (a malformed body) is read as if padded with NULs.
func DecodeStreamID(body []byte) string {
	out := make([]byte, 0, len(body)+3)
	for w := 0; w < len(body); w += 4 {
		var word [4]byte
		copy(word[:], body[w:])
		out = append(out, word[3], word[2], word[1], word[0])
	}
	end := len(out)
	for end > 0 && out[end-1] == 0 {
		end--
	}
	return string(out[:end])
}

// AppendStreamID appends the wire form of id (a SID extension body, without
// the block header) to dst.
func AppendStreamID(dst []byte, id string) []byte {
	for w := 0; w < len(id); w += 4 {
		var word [4]byte
		copy(word[:], id[w:])
		dst = append(dst, word[3], word[2], word[1], word[0])
	}
	return dst
}
