package srthandler

import (
	"testing"

	"github.com/srtroute/caddy-l4-srt/internal/streamid"
)

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		fold, want bool
	}{
		{"live/cam1", "live/cam1", false, true},
		{"live/cam1", "live/cam10", false, false},
		{"live/cam1", "Live/cam1", false, false},
		{"*", "", false, true},
		{"*", "anything/at/all", false, true},
		{"live/*", "live/", false, true},
		{"live/*", "live/a/b/c", false, true}, // a star spans slashes
		{"live/*", "live", false, false},
		{"live/*", "vod/live/x", false, false},
		{"*/cam1", "live/cam1", false, true},
		{"*/cam1", "live/cam12", false, false},
		{"live/*/hd", "live/cam1/hd", false, true},
		{"live/*/hd", "live/a/b/hd", false, true},
		{"live/*/hd", "live/hd", false, false},
		{"a*b*c", "abc", false, true},
		{"a*b*c", "aXbYc", false, true},
		{"a*b*c", "acb", false, false},
		{"**", "x", false, true},
		// The literal pieces may not overlap.
		{"ab*ba", "aba", false, false},
		{"ab*ba", "abba", false, true},
		{"a*a", "a", false, false},
		// Stars are the only special character.
		{"live/?", "live/x", false, false},
		{"live/[ab]", "live/a", false, false},
		{"live/[ab]", "live/[ab]", false, true},
		// Case folding (host): both the pattern and the value.
		{"example.com", "EXAMPLE.com", true, true},
		{"*.Example.COM", "cdn.example.com", true, true},
		{"*.example.com", "CDN.EXAMPLE.COM", true, true},
		{"*.example.com", "example.com", true, false},
		{"ünï*", "ÜNÏCODE", true, true},
	}
	for _, c := range cases {
		globs, err := compileGlobs([]string{c.pattern}, c.fold)
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if got := globs[0].match(c.s); got != c.want {
			t.Errorf("glob %q (fold %v) on %q: %v, want %v", c.pattern, c.fold, c.s, got, c.want)
		}
	}
	if _, err := compileGlobs([]string{"live/*", ""}, false); err == nil {
		t.Error("an empty pattern compiled")
	}
	if !matchAny(nil, "whatever") {
		t.Error("no globs did not match everything")
	}
	two, _ := compileGlobs([]string{"live/*", "vod/*"}, false)
	if !matchAny(two, "vod/x") || matchAny(two, "tv/x") {
		t.Error("a list of globs is not any-of")
	}
}

// route provisions a route that sends to one upstream.
func route(t *testing.T, r Route) *Route {
	t.Helper()
	if r.To == nil && r.Reject == "" {
		r.To = []string{"udp/127.0.0.1:9000"}
	}
	if err := r.provision(); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestRouteMatchers(t *testing.T) {
	cases := []struct {
		name     string
		route    Route
		match    []string
		mismatch []string
	}{
		{"stream_id", Route{StreamID: []string{"#!::r=live/*"}},
			[]string{"#!::r=live/cam1,m=publish"},
			[]string{"live/cam1", "#!::h=live/cam1"}},
		{"stream_id_regexp", Route{StreamIDRegexp: `^#!::.*\bu=(alice|bob)\b`},
			[]string{"#!::u=alice,r=x", "#!::r=x,u=bob"},
			[]string{"#!::u=carol,r=x", "u=alice"}},
		{"resource", Route{Resource: []string{"live/*"}},
			[]string{"#!::r=live/cam1", "live/cam2", "#!::h=live/cam3", "#!::h=example.com/live/cam4"},
			[]string{"#!::r=Live/cam1", "vod/x", "#!::h=example.com"}},
		{"host, case folded", Route{Host: []string{"*.Example.com"}},
			[]string{"#!::h=cdn.example.com,r=x", "#!::h=CDN.EXAMPLE.COM,r=x", "#!::h=edge.example.com/live/x"},
			[]string{"#!::h=example.com,r=x", "cdn.example.com", "#!::r=x"}},
		{"user", Route{User: []string{"alice", "bob*"}},
			[]string{"#!::u=alice,r=x", "#!::u=bobby"},
			[]string{"#!::u=Alice", "#!::u=carol", "alice"}},
		{"mode", Route{Mode: []string{"publish", "bidirectional"}},
			[]string{"#!::r=x,m=publish", "#!::m=bidirectional"},
			[]string{"#!::r=x", "#!::r=x,m=request", "#!::m=Publish", "plain"}},
		{"every matcher must hold", Route{Resource: []string{"live/*"}, User: []string{"alice"}, Mode: []string{"publish"}},
			[]string{"#!::r=live/x,u=alice,m=publish"},
			[]string{"#!::r=live/x,u=alice", "#!::r=live/x,m=publish", "#!::r=vod/x,u=alice,m=publish"}},
		{"catch-all", Route{},
			[]string{"", "anything", "#!::r=x,u=y,m=publish", "#!::"},
			nil},
	}
	for _, c := range cases {
		r := route(t, c.route)
		for _, id := range c.match {
			info := streamid.Parse(id)
			if !r.matches(&info) {
				t.Errorf("%s: %q did not match", c.name, id)
			}
		}
		for _, id := range c.mismatch {
			info := streamid.Parse(id)
			if r.matches(&info) {
				t.Errorf("%s: %q matched", c.name, id)
			}
		}
	}
}

// The first route that matches wins, whatever comes after it, and a
// caller no route matches gets none.
func TestRouteOrder(t *testing.T) {
	h := &Handler{Routes: []*Route{
		route(t, Route{Resource: []string{"live/private/*"}, Reject: "forbidden"}),
		route(t, Route{Resource: []string{"live/*"}, To: []string{"udp/127.0.0.1:9001"}}),
		route(t, Route{Resource: []string{"live/*"}, To: []string{"udp/127.0.0.1:9002"}}),
		route(t, Route{Host: []string{"example.com"}, To: []string{"udp/127.0.0.1:9003"}}),
	}}
	for _, c := range []struct {
		id   string
		want int
	}{
		{"live/private/x", 0},
		{"live/public", 1},
		{"#!::h=EXAMPLE.com,r=live/x", 1},
		{"#!::h=example.com,r=vod/x", 3},
		{"vod/x", -1},
	} {
		info := streamid.Parse(c.id)
		i, r := h.match(&info)
		if i != c.want || (r == nil) != (c.want < 0) || (r != nil && r != h.Routes[i]) {
			t.Errorf("%q: route %d (%v), want %d", c.id, i, r, c.want)
		}
	}
	// A catch-all placed first hides every route after it.
	h.Routes = append([]*Route{route(t, Route{To: []string{"udp/127.0.0.1:9004"}})}, h.Routes...)
	info := streamid.Parse("live/private/x")
	if i, _ := h.match(&info); i != 0 {
		t.Errorf("with a catch-all first: route %d, want 0", i)
	}
}

func TestRouteProvisionErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Route
	}{
		{"empty glob", Route{Resource: []string{""}, To: []string{"udp/127.0.0.1:1"}}},
		{"bad regexp", Route{StreamIDRegexp: "(", To: []string{"udp/127.0.0.1:1"}}},
		{"unknown mode", Route{Mode: []string{"push"}, To: []string{"udp/127.0.0.1:1"}}},
		{"no action", Route{Resource: []string{"x"}}},
		{"to and reject", Route{To: []string{"udp/127.0.0.1:1"}, Reject: "forbidden"}},
		{"lb_policy on reject", Route{Reject: "forbidden", LBPolicy: "first"}},
		{"unknown reject reason", Route{Reject: "nope"}},
		{"unknown lb_policy", Route{To: []string{"udp/127.0.0.1:1"}, LBPolicy: "nope"}},
	} {
		if err := c.r.provision(); err == nil {
			t.Errorf("%s: provisioned", c.name)
		}
	}
}
