package srthandler_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// TestSecretsStayHidden: callers whose stream IDs hold an s= token, a
// MediaMTX password or an auth jwt param reach the origin with the ID
// byte-exact, while Caddy's log lines (established and ended) and
// GET /srt/sessions show none of the secrets.
func TestSecretsStayHidden(t *testing.T) {
	b := startBackend(t, "b")
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			// An auth jwt route names a param: its value is a secret on
			// every route.
			map[string]any{"resource": []string{"never/*"}, "to": to(b.Addr()),
				"auth": map[string]any{"jwt": map[string]any{"key": strings.Repeat("k", 32), "param": "tok"}}},
			map[string]any{"to": to(b.Addr())},
		},
	}, testpeer.Options{Admin: true, LogFile: logFile})

	secrets := []string{"hunter2-s-value", "mediamtx-pass-9", "jwt-param-token"}
	ids := []string{
		"#!::r=live/a,m=publish,s=" + secrets[0],
		"publish:live/b:alice:" + secrets[1],
		"#!::r=live/c,m=publish,tok=" + secrets[2],
	}
	for _, id := range ids {
		conn, err := testpeer.Dial(p.Addr, id, testpeer.DialOptions{})
		if err != nil {
			t.Fatalf("dial %q: %v", id, err)
		}
		defer conn.Close()
		if _, err := conn.Write(make([]byte, 1316)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "three backend connections", func() bool { return len(b.Conns()) == 3 })
	want := slices.Clone(ids)
	slices.Sort(want)
	if got := streamIDs(b); !slices.Equal(got, want) {
		t.Errorf("the origin got %q, want the raw IDs %q", got, want)
	}

	api, err := p.Get("/srt/sessions")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(sessions(t, p)); n != 3 {
		t.Fatalf("%d sessions listed, want 3: %s", n, api)
	}
	for _, s := range secrets {
		if strings.Contains(string(api), s) {
			t.Errorf("GET /srt/sessions shows the secret %q: %s", s, api)
		}
	}
	if !strings.Contains(string(api), `s=***`) || !strings.Contains(string(api), `tok=***`) || !strings.Contains(string(api), `alice:***`) {
		t.Errorf("GET /srt/sessions does not show the redacted IDs: %s", api)
	}

	for _, s := range sessions(t, p) {
		if _, err := p.Delete("/srt/sessions/" + s.ID); err != nil {
			t.Fatal(err)
		}
	}
	var logs string
	waitFor(t, 5*time.Second, "three session-ended lines", func() bool {
		raw, _ := os.ReadFile(logFile)
		logs = string(raw)
		return strings.Count(logs, `"session ended"`) == 3
	})
	if strings.Count(logs, `"session established"`) != 3 {
		t.Errorf("want three session-established lines:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log shows the secret %q:\n%s", s, logs)
		}
	}
	if !strings.Contains(logs, `s=***`) {
		t.Errorf("the log lacks the redacted stream ID:\n%s", logs)
	}
}
