package srthandler

import (
	"testing"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// An upstream's rejection codes are labels only from a known set: an
// upstream (or a placeholder target) sending every number would otherwise
// make a series for each.
func TestCodeLabel(t *testing.T) {
	cases := []struct {
		outcome string
		code    wire.RejectReason
		want    string
	}{
		{outcomeUpstreamRejected, wire.RejXForbidden, "1403"},
		{outcomeUpstreamRejected, wire.RejBadSecret, "10"},
		{outcomeUpstreamRejected, 2403, "other"},
		{outcomeUpstreamRejected, 1999, "other"},
		{outcomeRejected, 2403, "2403"}, // configured: bounded by the config
	}
	for _, c := range cases {
		if got := codeLabel(c.outcome, c.code); got != c.want {
			t.Errorf("codeLabel(%s, %d) = %q, want %q", c.outcome, c.code, got, c.want)
		}
	}
}
