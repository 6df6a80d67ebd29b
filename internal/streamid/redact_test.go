package streamid

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
		secret    []string
	}{
		{"", "", nil},
		{"live/cam1", "live/cam1", nil},
		{"#!::", "#!::", nil},
		{"#!::r=live/x,m=publish", "#!::r=live/x,m=publish", nil},
		{"#!::r=live/x,s=hunter2,m=publish", "#!::r=live/x,s=***,m=publish", nil},
		{"#!::s=a,r=x,s=b", "#!::s=***,r=x,s=***", nil}, // every occurrence
		{"#!::s=k=v,r=x", "#!::s=***,r=x", nil},         // the value runs to the comma
		{"#!::s=,r=x", "#!::s=,r=x", nil},               // nothing to hide
		{"#!::s,r=x", "#!::s,r=x", nil},                 // nor here
		{"#!::,,s=x,,", "#!::,,s=***,,", nil},           // empty pairs kept
		{"#!::S=x,ss=y", "#!::S=x,ss=y", nil},           // keys are case-sensitive
		{"#!::r=x,token=abc.def", "#!::r=x,token=***", []string{"token"}},
		{"#!::r=x,token=abc,s=z", "#!::r=x,token=***,s=***", []string{"token"}},
		// Not the access-control syntax: s= is just text.
		{"s=visible", "s=visible", nil},
		// MediaMTX.
		{"publish:live/cam", "publish:live/cam", nil},
		{"publish:live/cam:q=1", "publish:live/cam:q=1", nil},
		{"publish:live/cam:alice:pw1", "publish:live/cam:alice:***", nil},
		{"read:live/cam:alice:pw1:q=1", "read:live/cam:alice:***:q=1", nil},
		{"read:live/cam:alice:pw1:q:r", "read:live/cam:alice:***:q:r", nil},
		{"publish:p:jwt:eyJ.x.y", "publish:p:jwt:***", nil},
		{"publish:p:u:", "publish:p:u:", nil},
		{"play:p:u:pw", "play:p:u:pw", nil},
	} {
		if got := Redact(tc.raw, tc.secret...); got != tc.want {
			t.Errorf("Redact(%q, %q) = %q, want %q", tc.raw, tc.secret, got, tc.want)
		}
	}
}

func TestRedactInfo(t *testing.T) {
	info := Parse("#!::r=live/x,u=bob,s=hunter2,token=tk1,x=keep")
	keys := info.Keys
	red := info.Redact("token")
	if red.Raw != "#!::r=live/x,u=bob,s=***,token=***,x=keep" || red.Session != Mask ||
		red.Keys["token"] != Mask || red.Keys["x"] != "keep" || red.User != "bob" || red.Resource != "live/x" {
		t.Errorf("Redact: %+v", red)
	}
	if info.Raw != "#!::r=live/x,u=bob,s=hunter2,token=tk1,x=keep" || keys["token"] != "tk1" || info.Session != "hunter2" {
		t.Errorf("Redact changed the original: %+v", info)
	}
	// A MediaMTX ID read as a plain one is its own resource: hidden too.
	plain := Parse("publish:live/x:alice:pw1")
	if r := plain.Redact(); r.Resource == plain.Resource && strings.Contains(plain.Resource, "pw1") && strings.Contains(r.Resource, "pw1") {
		t.Errorf("plain MediaMTX resource kept its password: %q", r.Resource)
	}
}

// FuzzRedact: a secret placed in the secret positions of any stream ID
// never survives redaction, the redacted ID reads back with the same
// fields but the secret ones, and redacting is idempotent.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{"", "#!::r=a", "#!::,,", "#!::s=", "publish:a:b", "read:a", "#!::r=a,s=x=y", "#!::h=v/a/b,m=publish"} {
		f.Add(s, "tail,u=x")
	}
	const secret = "SECRET-7f3a"
	f.Fuzz(func(t *testing.T, head, tail string) {
		acs := strings.HasPrefix(head, Prefix)
		oneField := !strings.Contains(head, ":")
		for _, v := range []struct {
			raw    string
			hidden bool // the secret is where secrets go
		}{
			{head + ",s=" + secret + "," + tail, acs},
			{head + ",tok=" + secret + "," + tail, acs},
			{"publish:" + head + ":u:" + secret + ":" + tail, oneField},
			{"read:" + head + ":u:" + secret, oneField},
			{head, false},
		} {
			raw := v.raw
			red := Redact(raw, "tok")
			if v.hidden && !strings.Contains(head+tail, secret) && strings.Contains(red, secret) {
				t.Fatalf("Redact(%q) = %q keeps the secret", raw, red)
			}
			if again := Redact(red, "tok"); again != red {
				t.Fatalf("not idempotent: %q -> %q -> %q", raw, red, again)
			}
			a, b := Parse(raw), Parse(red)
			if strings.HasPrefix(raw, Prefix) {
				if b.Resource != a.Resource && a.Resource != raw || b.Host != a.Host || b.User != a.User || b.Mode != a.Mode || b.Type != a.Type {
					t.Fatalf("Redact(%q) = %q changed a field: %+v vs %+v", raw, red, a, b)
				}
				if a.Session != "" && b.Session != Mask {
					t.Fatalf("Redact(%q) = %q: session %q", raw, red, b.Session)
				}
				if v := a.Keys["tok"]; v != "" && b.Keys["tok"] != Mask {
					t.Fatalf("Redact(%q) = %q: tok %q", raw, red, b.Keys["tok"])
				}
			}
			if len(red) > len(raw)+len(Mask)*(strings.Count(raw, "=")+1) {
				t.Fatalf("Redact(%q) grew to %q", raw, red)
			}
		}
	})
}
