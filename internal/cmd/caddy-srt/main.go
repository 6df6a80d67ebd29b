// Command caddy-srt is Caddy with caddy-l4 and this plugin, for tests that
// need a proxy in a process of its own (a second instance, one to kill).
// Releases are built with xcaddy (make build).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/mholt/caddy-l4/layer4"

	_ "github.com/srtroute/caddy-l4-srt"
)

func main() { caddycmd.Main() }
