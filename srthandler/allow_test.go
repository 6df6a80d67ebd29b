package srthandler

import (
	"errors"
	"strings"
	"testing"
)

// A placeholder upstream needs upstream_allow; a configured one does not.
func TestValidateAllow(t *testing.T) {
	cases := []struct {
		allow []string
		to    string
		want  string // "" for valid
	}{
		{nil, "udp/10.0.0.1:10080", ""},
		{nil, "udp/{l4.srt.host}:10080", "upstream_allow"},
		{[]string{"10.0.0.0/8"}, "udp/{l4.srt.host}:10080", ""},
		{[]string{"10.0.0.7", "fd00::/8"}, "udp/{l4.srt.host}:10080", ""},
		{[]string{"10.0.0.0/33"}, "udp/10.0.0.1:10080", "CIDR"},
		{[]string{"origins.internal"}, "udp/10.0.0.1:10080", "CIDR"},
	}
	for _, c := range cases {
		h := &Handler{UpstreamAllow: c.allow, Routes: []*Route{{To: []string{c.to}}}}
		err := h.validateAllow()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("allow %v, to %s: %v", c.allow, c.to, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("allow %v, to %s: got %v, want an error about %s", c.allow, c.to, err, c.want)
		}
	}
}

func TestAllowed(t *testing.T) {
	allow, err := parseAllowList([]string{"10.0.0.0/8", "127.0.0.1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	r := &Route{allow: allow}
	cases := []struct {
		addr, want string
		refused    bool
	}{
		{"10.1.2.3:10080", "10.1.2.3:10080", false},
		{"127.0.0.1:9000", "127.0.0.1:9000", false},
		{"[fd00::5]:9000", "[fd00::5]:9000", false},
		{"[::ffff:10.0.0.1]:9000", "10.0.0.1:9000", false},
		{"127.0.0.2:9000", "", true},
		{"192.168.1.1:53", "", true},
		{"[fe80::1%lo]:9000", "", true},
		{"no-such-host.invalid:9000", "", true},
	}
	for _, c := range cases {
		got, err := r.allowed(c.addr)
		if c.refused {
			if !errors.Is(err, errNotAllowed) {
				t.Errorf("%s: got %q, %v; want refused", c.addr, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.addr, got, err, c.want)
		}
	}
}
