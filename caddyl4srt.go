// Package caddyl4srt puts SRT servers behind one UDP port of the Caddy
// layer4 app and routes each SRT connection by its stream ID, without
// terminating SRT. Importing it registers every module:
//
//	xcaddy build --with github.com/srtroute/caddy-l4-srt
package caddyl4srt

import (
	_ "github.com/srtroute/caddy-l4-srt/srsheartbeat"
	_ "github.com/srtroute/caddy-l4-srt/srthandler"
	_ "github.com/srtroute/caddy-l4-srt/srtmatcher"
)
