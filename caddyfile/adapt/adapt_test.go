// Package adapt holds the Caddyfile adapt tests: every testdata/*.caddyfile must
// adapt, through Caddy's own caddyfile adapter (what `caddy adapt` runs),
// to the JSON in the file beside it.
package adapt

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/mholt/caddy-l4/layer4"

	_ "github.com/srtroute/caddy-l4-srt"
)

var update = flag.Bool("update", false, "rewrite the expected JSON files")

func adapt(t *testing.T, src []byte) []byte {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, warnings, err := adapter.Adapt(src, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	for _, w := range warnings {
		if strings.Contains(w.Message, "not formatted") {
			continue // SPEC.md's example aligns its comments by hand
		}
		t.Errorf("adapt warning: %s:%d: %s", w.File, w.Line, w.Message)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// caddyfiles lists every Caddyfile the project ships, each with the path
// of the JSON it must adapt to: testdata/x.caddyfile beside x.json, and
// examples/*/Caddyfile beside caddy.json.
func caddyfiles(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	tests, _ := filepath.Glob("testdata/*.caddyfile")
	for _, f := range tests {
		out[f] = strings.TrimSuffix(f, ".caddyfile") + ".json"
	}
	examples, _ := filepath.Glob("../../examples/*/Caddyfile")
	for _, f := range examples {
		out[f] = filepath.Join(filepath.Dir(f), "caddy.json")
	}
	if len(tests) == 0 || len(examples) == 0 {
		t.Fatal("no Caddyfiles found")
	}
	return out
}

func TestAdapt(t *testing.T) {
	for f, want := range caddyfiles(t) {
		t.Run(f, func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := adapt(t, src)
			if *update {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("%s adapts to\n%s\nwant (%s)\n%s", f, got, want, exp)
			}
		})
	}
}

func TestAdaptErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown option", "srt {\n\tbogus 1\n}", "unrecognized srt option 'bogus'"},
		{"unknown route option", "srt {\n\troute {\n\t\tbogus 1\n\t}\n}", "unrecognized route option 'bogus'"},
		{"duplicate option", "srt {\n\tidle_timeout 1s\n\tidle_timeout 2s\n}", "given twice"},
		{"bad duration", "srt {\n\tidle_timeout soon\n}", "idle_timeout"},
		{"off is not a timeout", "srt {\n\tidle_timeout off\n}", "idle_timeout"},
		{"bad batch window", "srt {\n\tbatch_window soon\n}", "batch_window"},
		{"empty to", "srt {\n\troute {\n\t\tto\n\t}\n}", "needs a value"},
		{"two regexps", "srt {\n\troute {\n\t\tstream_id_regexp a b\n\t}\n}", "wrong argument count"},
		{"args on srt", "srt now {\n}", "wrong argument count"},
		{"auth without a form", "srt {\n\troute {\n\t\tauth\n\t}\n}", "want http URL or jwt"},
		{"auth http without a URL", "srt {\n\troute {\n\t\tauth http\n\t}\n}", "want one URL"},
		{"unknown auth option", "srt {\n\troute {\n\t\tauth jwt {\n\t\t\ttimeout 1s\n\t\t}\n\t}\n}", "unrecognized auth jwt option 'timeout'"},
		{"empty upstream_allow", "srt {\n\tupstream_allow\n}", "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "{\n\tlayer4 {\n\t\tudp/:10080 {\n\t\t\troute {\n" + tc.body + "\n\t\t\t}\n\t\t}\n\t}\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// validate provisions an adapted config without starting it, the check
// `caddy validate` runs.
func validate(src []byte) error {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, nil)
	if err != nil {
		return err
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		return err
	}
	return caddy.Validate(&cfg)
}

func TestAdaptedConfigsProvision(t *testing.T) {
	t.Setenv("SRT_JWT_KEY", "a-secret-of-32-bytes-for-examples") // examples/acl
	for f := range caddyfiles(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(src); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// xcaddy.json, the config `make run` starts, must load as it is.
func TestDevelopmentConfigProvisions(t *testing.T) {
	b, err := os.ReadFile("../../xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
}

func TestProvisionErrors(t *testing.T) {
	for _, tc := range []struct{ name, route, want string }{
		{"to and reject", "to udp/127.0.0.1:1\n\t\treject forbidden", "not both"},
		{"no action", "resource live/*", "needs an action"},
		{"bad policy", "to udp/127.0.0.1:1\n\t\tlb_policy fastest", "lb_policy"},
		{"policy without upstreams", "reject forbidden\n\t\tlb_policy first", "lb_policy needs upstreams"},
		{"bad mode", "mode push\n\t\tto udp/127.0.0.1:1", "mode \"push\""},
		{"bad reject name", "reject nope", "rejection \"nope\""},
		{"reject below 1000", "reject 404", "numbers must be from 1000"},
		{"tcp upstream", "to tcp/127.0.0.1:1", "SRT runs over UDP"},
		{"port range", "to udp/127.0.0.1:1-2", "exactly one port"},
		{"bad regexp", "stream_id_regexp (\n\t\tto udp/127.0.0.1:1", "stream_id_regexp"},
		{"placeholder upstream without upstream_allow", "to udp/{l4.srt.host}:10080", "upstream_allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "{\n\tlayer4 {\n\t\tudp/127.0.0.1:0 {\n\t\t\troute {\n\t\t\t\tsrt {\n\t\t\t\t\troute {\n\t\t" +
				tc.route + "\n\t\t\t\t\t}\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t}\n}\n"
			err := validate([]byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
