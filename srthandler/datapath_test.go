package srthandler

import (
	"errors"
	"testing"

	"github.com/srtroute/caddy-l4-srt/internal/session"
)

func TestChooseAuto(t *testing.T) {
	refused := errors.New("refused")
	for _, tc := range []struct {
		probe  error
		hashes bool
		want   session.Path
	}{
		{nil, true, session.PathEBPF},
		{nil, false, session.PathEBPF},
		{refused, true, session.PathSocket},
		{refused, false, session.PathListener},
	} {
		if got, why := chooseAuto(tc.probe, tc.hashes); got != tc.want || why == "" {
			t.Errorf("chooseAuto(%v, %v) = %v %q, want %v", tc.probe, tc.hashes, got, why, tc.want)
		}
	}
}
