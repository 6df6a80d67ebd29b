package ebpf

import "testing"

func TestReleaseAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release      string
		major, minor int
		want         bool
	}{
		{"6.18.44-fc-v1045", 6, 13, true},
		{"6.13.0", 6, 13, true},
		{"6.12.9-amd64", 6, 13, false},
		{"6.1.0-18-amd64", 6, 6, false},
		{"5.15.0-91-generic", 6, 6, false},
		{"7.0", 6, 13, true},
		{"garbage", 6, 6, false},
		{"", 6, 6, false},
	} {
		if got := releaseAtLeast(tc.release, tc.major, tc.minor); got != tc.want {
			t.Errorf("releaseAtLeast(%q, %d, %d) = %v, want %v", tc.release, tc.major, tc.minor, got, tc.want)
		}
	}
}
