package streamid

import (
	"flag"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
	"github.com/srtroute/caddy-l4-srt/internal/wire/wiretest"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want Info // Raw is filled in from raw
	}{
		// Plain IDs name the resource, whatever they contain.
		{"", Info{Mode: ModeRequest, Type: "stream"}},
		{"live/stream", Info{Resource: "live/stream", Mode: ModeRequest, Type: "stream"}},
		{"hello", Info{Resource: "hello", Mode: ModeRequest, Type: "stream"}},
		{"Publish:cam1", Info{Resource: "Publish:cam1", Mode: ModeRequest, Type: "stream"}},
		{"play:cam1", Info{Resource: "play:cam1", Mode: ModeRequest, Type: "stream"}},
		{"r=live,m=publish", Info{Resource: "r=live,m=publish", Mode: ModeRequest, Type: "stream"}},
		{"#!:r=x", Info{Resource: "#!:r=x", Mode: ModeRequest, Type: "stream"}},
		{" #!::r=x", Info{Resource: " #!::r=x", Mode: ModeRequest, Type: "stream"}},

		// Access-control syntax.
		{"#!::", Info{Mode: ModeRequest, Type: "stream"}},
		{"#!::r=live/cam1,m=publish", Info{Resource: "live/cam1", Mode: ModePublish, Type: "stream"}},
		{"#!::u=admin,r=bluesbrothers1_hi", Info{Resource: "bluesbrothers1_hi", User: "admin", Mode: ModeRequest, Type: "stream"}},
		{"#!::r=a,m=bidirectional,u=bob,h=example.com,s=sess-1,t=file", Info{
			Resource: "a", Mode: ModeBidirectional, User: "bob", Host: "example.com", Session: "sess-1", Type: "file",
		}},
		{"#!::m=request,t=stream", Info{Mode: ModeRequest, Type: "stream"}},
		{"#!::m=play", Info{Mode: "play", Type: "stream"}}, // kept, for routes to reject
		{"#!::m", Info{Mode: "", Type: "stream"}},          // an empty mode is kept too
		{"#!::r=x,t=", Info{Resource: "x", Mode: ModeRequest, Type: ""}},
		{"#!::t=auth,u=x", Info{User: "x", Mode: ModeRequest, Type: "auth"}},
		{"#!::r=a,x-token=abc,k2=", Info{Resource: "a", Mode: ModeRequest, Type: "stream", Keys: map[string]string{"x-token": "abc", "k2": ""}}},
		{"#!::r=a=b=c,s=k=v", Info{Resource: "a=b=c", Session: "k=v", Mode: ModeRequest, Type: "stream"}},
		{"#!::flag,r=x", Info{Resource: "x", Mode: ModeRequest, Type: "stream", Keys: map[string]string{"flag": ""}}},
		{"#!::=v,r=x", Info{Resource: "x", Mode: ModeRequest, Type: "stream", Keys: map[string]string{"": "v"}}},
		{"#!::,,r=x,,", Info{Resource: "x", Mode: ModeRequest, Type: "stream"}},
		{"#!::r=first,r=second", Info{Resource: "second", Mode: ModeRequest, Type: "stream"}},
		{"#!::R=x", Info{Mode: ModeRequest, Type: "stream", Keys: map[string]string{"R": "x"}}},
		{"#!::r=straße/żółw,u=日本", Info{Resource: "straße/żółw", User: "日本", Mode: ModeRequest, Type: "stream"}},

		// MediaMTX's form: ACTION:PATH[:USER:PASS][:QUERY].
		{"publish:cam1", Info{Resource: "cam1", Mode: ModePublish, Type: "stream"}},
		{"read:cam1", Info{Resource: "cam1", Mode: ModeRequest, Type: "stream"}},
		{"publish:field/cam1", Info{Resource: "field/cam1", Mode: ModePublish, Type: "stream"}},
		{"read:field/cam1:tok=1", Info{Resource: "field/cam1", Query: "tok=1", Mode: ModeRequest, Type: "stream"}},
		{"read:field/cam1:bob:hunter2", Info{Resource: "field/cam1", User: "bob", Secret: "hunter2", Mode: ModeRequest, Type: "stream"}},
		{"publish:a:bob:hunter2:x=1&y=2", Info{Resource: "a", User: "bob", Secret: "hunter2", Query: "x=1&y=2", Mode: ModePublish, Type: "stream"}},
		{"publish:a::", Info{Resource: "a", Mode: ModePublish, Type: "stream"}},
		{"read:a:", Info{Resource: "a", Mode: ModeRequest, Type: "stream"}},
		// Not MediaMTX's form: no path, or too many parts.
		{"publish:", Info{Resource: "publish:", Mode: ModeRequest, Type: "stream"}},
		{"read::u:p", Info{Resource: "read::u:p", Mode: ModeRequest, Type: "stream"}},
		{"publish:a:b:c:d:e", Info{Resource: "publish:a:b:c:d:e", Mode: ModeRequest, Type: "stream"}},
		{"publish", Info{Resource: "publish", Mode: ModeRequest, Type: "stream"}},

		// SRS's legacy h= forms.
		{"#!::h=live/stream", Info{Resource: "live/stream", Mode: ModeRequest, Type: "stream"}},
		{"#!::h=live/stream,m=publish", Info{Resource: "live/stream", Mode: ModePublish, Type: "stream"}},
		{"#!::h=vhost/app/stream", Info{Host: "vhost", Resource: "app/stream", Mode: ModeRequest, Type: "stream"}},
		{"#!::h=vhost/app/stream/extra", Info{Host: "vhost", Resource: "app/stream/extra", Mode: ModeRequest, Type: "stream"}},
		{"#!::h=vhost/app/stream,m=publish", Info{Host: "vhost", Resource: "app/stream", Mode: ModePublish, Type: "stream"}},
		{"#!::m=publish,h=vhost/app/stream", Info{Host: "vhost", Resource: "app/stream", Mode: ModePublish, Type: "stream"}},
		// An r key wins: h stays a host even with slashes.
		{"#!::h=vhost/app,r=live/x", Info{Host: "vhost/app", Resource: "live/x", Mode: ModeRequest, Type: "stream"}},
		// h without a slash is a host.
		{"#!::h=example.com", Info{Host: "example.com", Mode: ModeRequest, Type: "stream"}},
		{"#!::h=/", Info{Resource: "/", Mode: ModeRequest, Type: "stream"}},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			want := tc.want
			want.Raw = tc.raw
			if got := Parse(tc.raw); !reflect.DeepEqual(got, want) {
				t.Fatalf("Parse(%q) =\n %+v\nwant\n %+v", tc.raw, got, want)
			}
		})
	}
}

// A publisher and its players share a stream key in every form; other
// streams do not.
func TestKey(t *testing.T) {
	for _, group := range [][]string{
		{"live/cam1", "#!::r=live/cam1,m=publish", "#!::h=live/cam1", "publish:live/cam1", "read:live/cam1:u:p:q", "#!::r=live/cam1,s=x,u=y"},
		{"#!::h=vhost/live/cam1,m=publish", "#!::h=vhost,r=live/cam1", "#!::r=live/cam1,h=vhost"},
		{"live/cam2", "publish:live/cam2", "read:live/cam2:q"},
	} {
		want := Parse(group[0])
		for _, id := range group[1:] {
			got := Parse(id)
			if got.Key() != want.Key() {
				t.Errorf("%q has key %q, %q has %q", id, got.Key(), group[0], want.Key())
			}
		}
	}
	for _, pair := range [][2]string{
		{"live/cam1", "#!::h=vhost/live/cam1"},
		{"#!::h=a,r=bc", "#!::h=ab,r=c"},
		{"publish:live/cam1", "publish:live/cam10"},
	} {
		a, b := Parse(pair[0]), Parse(pair[1])
		if a.Key() == b.Key() {
			t.Errorf("%q and %q share key %q", pair[0], pair[1], a.Key())
		}
	}
}

func TestValidMode(t *testing.T) {
	for m, want := range map[string]bool{
		"request": true, "publish": true, "bidirectional": true,
		"": false, "play": false, "Publish": false, "publish ": false,
	} {
		if ValidMode(m) != want {
			t.Errorf("ValidMode(%q) = %v", m, !want)
		}
	}
}

// TestParseCaptured reads the stream IDs real callers sent
// (../wire/testdata/captures).
func TestParseCaptured(t *testing.T) {
	want := map[string]Info{
		"#!::r=live/ffmpeg,m=publish":      {Resource: "live/ffmpeg", Mode: ModePublish, Type: "stream"},
		"live/secure":                      {Resource: "live/secure", Mode: ModeRequest, Type: "stream"},
		"#!::r=live/cam1,m=publish":        {Resource: "live/cam1", Mode: ModePublish, Type: "stream"},
		"#!::u=mallory,r=live/x":           {Resource: "live/x", User: "mallory", Mode: ModeRequest, Type: "stream"},
		"live/retry":                       {Resource: "live/retry", Mode: ModeRequest, Type: "stream"},
		"hello":                            {Resource: "hello", Mode: ModeRequest, Type: "stream"},
		"#!::h=vhost/app/stream,m=publish": {Host: "vhost", Resource: "app/stream", Mode: ModePublish, Type: "stream"},
		"#!::r=live/denied":                {Resource: "live/denied", Mode: ModeRequest, Type: "stream"},
		"#!::h=żółw.example/app/straße,m=publish,x-key=a=b": {
			Host: "żółw.example", Resource: "app/straße", Mode: ModePublish, Type: "stream", Keys: map[string]string{"x-key": "a=b"},
		},
	}
	ids := capturedStreamIDs(t)
	if len(ids) == 0 {
		t.Fatal("no stream IDs in the captures")
	}
	for _, id := range ids {
		w, ok := want[id]
		if !ok {
			t.Errorf("captured stream ID %q has no expectation", id)
			continue
		}
		w.Raw = id
		if got := Parse(id); !reflect.DeepEqual(got, w) {
			t.Errorf("Parse(%q) =\n %+v\nwant\n %+v", id, got, w)
		}
	}
}

// capturedStreamIDs returns the distinct stream IDs of the callers'
// conclusions in the captures.
func capturedStreamIDs(t testing.TB) []string {
	t.Helper()
	caps, err := wiretest.LoadDir(wiretest.CapturesDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, c := range caps {
		for _, d := range c.Datagrams {
			hs, err := wire.ParseHandshake(d.Bytes)
			if err != nil || !d.FromCaller || hs.Type != wire.HSConclusion {
				continue
			}
			info, err := wire.ParseConclusion(&hs)
			if err != nil || !info.HasStreamID || seen[info.StreamID] {
				continue
			}
			seen[info.StreamID] = true
			out = append(out, info.StreamID)
		}
	}
	return out
}

var writeCorpus = flag.Bool("write-corpus", false, "rewrite the capture-derived seeds in testdata/fuzz")

// TestWriteSeedCorpus writes the captured stream IDs as seeds:
//
//	go test ./internal/streamid -run TestWriteSeedCorpus -write-corpus
func TestWriteSeedCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to rewrite testdata/fuzz")
	}
	for i, id := range capturedStreamIDs(t) {
		if err := wiretest.WriteFuzzSeed("FuzzStreamIDParse", fmt.Sprintf("capture-%02d", i), id); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzStreamIDParse(f *testing.F) {
	for _, s := range []string{"", "#!::", "#!::r=a,m=publish,u=b,h=c,s=d,t=file,x=y=z", "#!::h=a/b/c", "#!::h=a/b", "#!::h=/", "#!::,=,,",
		"publish:a", "read:a/b:q", "read:a:u:p", "publish:a:u:p:q", "publish:a:u:p:q:x", "read::", "publish:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		info := Parse(raw)
		if info.Raw != raw {
			t.Fatalf("Parse(%q).Raw = %q", raw, info.Raw)
		}
		if !strings.HasPrefix(raw, Prefix) {
			checkPlainOrMediaMTX(t, raw, info)
			return
		}
		body := raw[len(Prefix):]
		// m and t: the last pair wins; a pair without '=' has an empty
		// value, which is kept (found by the fuzzer: "#!::000,m" asks
		// for mode ""), as any unknown mode is, for routes to refuse.
		mode, typ := ModeRequest, "stream"
		for _, pair := range strings.Split(body, ",") {
			k, v, _ := strings.Cut(pair, "=")
			switch k {
			case "m":
				mode = v
			case "t":
				typ = v
			}
		}
		if info.Mode != mode || info.Type != typ {
			t.Fatalf("Parse(%q): mode %q type %q, want %q %q", raw, info.Mode, info.Type, mode, typ)
		}
		// Every value comes from the ID itself, and each key or value from
		// one comma-separated pair.
		for _, v := range []string{info.Resource, info.Host, info.User, info.Session} {
			if !strings.Contains(body, v) || strings.Contains(v, ",") {
				t.Fatalf("Parse(%q): value %q is not a piece of one pair", raw, v)
			}
		}
		for k, v := range info.Keys {
			if strings.ContainsAny(k, ",=") || strings.Contains(v, ",") || !strings.Contains(body, k+"="+v) && v != "" {
				t.Fatalf("Parse(%q): custom key %q = %q", raw, k, v)
			}
			switch k {
			case "r", "h", "u", "s", "m", "t":
				t.Fatalf("Parse(%q): standard key %q among the custom keys", raw, k)
			}
		}
		// The legacy h= reading applies only without a resource.
		if info.Resource != "" && info.Host != "" && strings.Contains(info.Host, "/") && !strings.Contains(body, "r=") {
			t.Fatalf("Parse(%q): host %q with a slash beside resource %q", raw, info.Host, info.Resource)
		}
		if utf8.ValidString(raw) {
			for _, v := range []string{info.Resource, info.Host, info.User, info.Session, info.Mode, info.Type} {
				if !utf8.ValidString(v) {
					t.Fatalf("Parse(%q): split a UTF-8 sequence: %q", raw, v)
				}
			}
		}
		// The redacted form never holds a secret that the rest of the ID
		// does not spell out elsewhere.
		red := info.Redacted()
		if info.Secret != "" && strings.Count(red, info.Secret) >= strings.Count(raw, info.Secret) {
			t.Fatalf("Parse(%q).Redacted() = %q keeps the secret", raw, red)
		}
		// Parsing is deterministic.
		if again := Parse(raw); !reflect.DeepEqual(again, info) {
			t.Fatalf("Parse(%q) is not deterministic", raw)
		}
	})
}

// checkPlainOrMediaMTX holds a non-#!:: ID to MediaMTX's reading: its
// form when it has one, the whole ID as the resource otherwise.
func checkPlainOrMediaMTX(t *testing.T, raw string, info Info) {
	t.Helper()
	action, rest, _ := strings.Cut(raw, ":")
	parts := strings.Split(rest, ":")
	if (action != "publish" && action != "read") || !strings.Contains(raw, ":") || len(parts) > 4 || parts[0] == "" {
		if !reflect.DeepEqual(info, Info{Raw: raw, Resource: raw, Mode: ModeRequest, Type: "stream"}) {
			t.Fatalf("plain ID %q read as %+v", raw, info)
		}
		return
	}
	want := Info{Raw: raw, Resource: parts[0], Mode: ModeRequest, Type: "stream"}
	if action == "publish" {
		want.Mode = ModePublish
	}
	switch len(parts) {
	case 2:
		want.Query = parts[1]
	case 3, 4:
		want.User, want.Secret = parts[1], parts[2]
		if len(parts) == 4 {
			want.Query = parts[3]
		}
	}
	if !reflect.DeepEqual(info, want) {
		t.Fatalf("MediaMTX ID %q read as %+v, want %+v", raw, info, want)
	}
}

func TestRedacted(t *testing.T) {
	for raw, want := range map[string]string{
		"read:a/b:bob:hunter2":          "read:a/b:bob:***",
		"publish:a:bob:hunter2:q=1":     "publish:a:bob:***:q=1",
		"read:a:q":                      "read:a:q",
		"#!::r=a,s=tok,u=b":             "#!::r=a,s=***,u=b",
		"#!::s=one,r=a,s=two":           "#!::s=***,r=a,s=***",
		"#!::r=a,u=b":                   "#!::r=a,u=b",
		"live/x":                        "live/x",
		"#!::r=a,s=k=v,x=s=not-session": "#!::r=a,s=***,x=s=not-session",
	} {
		info := Parse(raw)
		if got := info.Redacted(); got != want {
			t.Errorf("Redacted(%q) = %q, want %q", raw, got, want)
		}
	}
}
