package session

import (
	"net/netip"
	"testing"
)

func TestSourceOf(t *testing.T) {
	cases := map[string]string{
		"192.0.2.7":                  "192.0.2.7",
		"::ffff:192.0.2.7":           "192.0.2.7",
		"2001:db8:1:2:aaaa::1":       "2001:db8:1:2::",
		"2001:db8:1:2:ffff:ffff::99": "2001:db8:1:2::",
		"2001:db8:1:3::1":            "2001:db8:1:3::",
	}
	for in, want := range cases {
		if got := SourceOf(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("SourceOf(%s) = %s, want %s", in, got, want)
		}
	}
}
