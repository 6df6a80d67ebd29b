// Package wiretest reads and writes the datagram captures that the tests of
// the wire, handshake and cookie packages use as table cases and fuzz seeds.
//
// A capture is a text file of real datagrams recorded between an SRT caller
// and an SRT listener (see internal/cmd/capture-handshakes): lines starting
// with '#' are notes, every other line is one datagram, its direction
// ("caller" or "listener": who sent it) followed by its bytes in hex,
// grouped in 32-bit words so that the SRT fields line up:
//
//	# gosrt v0.11.0 caller -> gosrt v0.11.0 listener
//	caller 80000000 00000000 0000a1b2 00000000 00000004 ...
//	listener 80000000 00000000 000030c5 2f1a9c44 00000005 ...
package wiretest

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Datagram is one recorded datagram.
type Datagram struct {
	// FromCaller is true for caller → listener, false for listener → caller.
	FromCaller bool
	Bytes      []byte
}

// Capture is one recorded exchange.
type Capture struct {
	// Name is the file name without its extension.
	Name string
	// Notes are the comment lines, without the leading "# ".
	Notes     []string
	Datagrams []Datagram
}

// Parse reads a capture in the text format.
func Parse(name string, r io.Reader) (*Capture, error) {
	c := &Capture{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		switch {
		case text == "":
			continue
		case strings.HasPrefix(text, "#"):
			c.Notes = append(c.Notes, strings.TrimSpace(strings.TrimPrefix(text, "#")))
			continue
		}
		fields := strings.Fields(text)
		var d Datagram
		switch fields[0] {
		case "caller":
			d.FromCaller = true
		case "listener":
		default:
			return nil, fmt.Errorf("%s:%d: direction %q is neither caller nor listener", name, line, fields[0])
		}
		b, err := hex.DecodeString(strings.Join(fields[1:], ""))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, line, err)
		}
		d.Bytes = b
		c.Datagrams = append(c.Datagrams, d)
	}
	return c, sc.Err()
}

// Format writes c in the text format.
func (c *Capture) Format(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, n := range c.Notes {
		fmt.Fprintf(bw, "# %s\n", n)
	}
	for _, d := range c.Datagrams {
		if d.FromCaller {
			bw.WriteString("caller")
		} else {
			bw.WriteString("listener")
		}
		for i := 0; i < len(d.Bytes); i += 4 {
			bw.WriteByte(' ')
			bw.WriteString(hex.EncodeToString(d.Bytes[i:min(i+4, len(d.Bytes))]))
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// LoadDir reads every *.txt capture in dir, sorted by name.
func LoadDir(dir string) ([]*Capture, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []*Capture
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			return nil, err
		}
		c, err := Parse(strings.TrimSuffix(filepath.Base(n), ".txt"), f)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// CapturesDir is where the captures live, relative to a package directory
// under internal/ (the working directory of its tests).
const CapturesDir = "../wire/testdata/captures"

// FuzzSeed encodes the arguments of a fuzz target in the corpus file
// format of go test -fuzz ("go test fuzz v1"). Supported argument types
// are []byte, string, bool, uint8, uint16, uint32, uint64 and int64.
func FuzzSeed(args ...any) []byte {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%t)\n", v)
		case uint8:
			fmt.Fprintf(&b, "byte(%d)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		case int64:
			fmt.Fprintf(&b, "int64(%d)\n", v)
		default:
			panic(fmt.Sprintf("wiretest: unsupported fuzz argument type %T", a))
		}
	}
	return []byte(b.String())
}

// WriteFuzzSeed writes one seed file testdata/fuzz/<target>/<name> below
// the current directory.
func WriteFuzzSeed(target, name string, args ...any) error {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), FuzzSeed(args...), 0o644)
}

// Unhex decodes hex that may be grouped with spaces, failing t on bad input.
func Unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}
