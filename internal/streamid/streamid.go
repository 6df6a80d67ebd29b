// Package streamid reads an SRT stream ID the way SRT servers do: libsrt's
// access-control syntax (#!::key=value,...), SRS's legacy h=app/stream and
// h=vhost/app/stream forms, MediaMTX's publish:PATH / read:PATH forms, and
// plain IDs, which are the resource itself.
package streamid

import "strings"

// Modes a caller may request (the m key).
const (
	ModeRequest       = "request"
	ModePublish       = "publish"
	ModeBidirectional = "bidirectional"
)

// ValidMode reports whether m is one of the modes of the access-control syntax.
func ValidMode(m string) bool {
	return m == ModeRequest || m == ModePublish || m == ModeBidirectional
}

// Prefix introduces libsrt's access-control syntax.
const Prefix = "#!::"

// Info is a parsed stream ID.
type Info struct {
	// Raw is the stream ID exactly as the caller sent it.
	Raw string
	// Resource (r), Host (h), User (u), Session (s) are empty when absent.
	Resource string
	Host     string
	User     string
	Session  string
	// Mode (m) is "request" unless the caller asked otherwise; an unknown
	// value is kept as given, so routes can reject it.
	Mode string
	// Type (t) defaults to "stream".
	Type string
	// Keys holds the keys that are not standard, in the caller's spelling.
	Keys map[string]string
	// Secret is MediaMTX's PASS. It is kept apart from every other field so
	// that nothing meant for logs, metrics or the admin API carries it.
	Secret string
	// Query is the QUERY part of MediaMTX's form, "" when absent.
	Query string
}

// Key is the stream key: host and resource, what stream_hash hashes and
// the directory records. A publisher and the players of one stream share
// it in every form of stream ID.
func (i *Info) Key() string {
	return i.Host + "\x00" + i.Resource
}

// Parse reads a stream ID. It never fails: whatever does not fit the
// access-control syntax is a plain ID, which names the resource.
func Parse(raw string) Info {
	info := Info{Raw: raw, Mode: ModeRequest, Type: "stream"}
	body, ok := strings.CutPrefix(raw, Prefix)
	if !ok {
		if !parseMediaMTX(raw, &info) {
			info.Resource = raw
		}
		return info
	}
	for pair := range strings.SplitSeq(body, ",") {
		if pair == "" {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		switch key {
		case "r":
			info.Resource = value
		case "h":
			info.Host = value
		case "u":
			info.User = value
		case "s":
			info.Session = value
		case "m":
			info.Mode = value
		case "t":
			info.Type = value
		default:
			if info.Keys == nil {
				info.Keys = make(map[string]string)
			}
			info.Keys[key] = value
		}
	}
	// SRS's legacy reading: without an r key, an h value with a slash is
	// app/stream or vhost/app/stream.
	if info.Resource == "" && strings.Contains(info.Host, "/") {
		parts := strings.Split(info.Host, "/")
		if len(parts) >= 3 {
			info.Host, info.Resource = parts[0], strings.Join(parts[1:], "/")
		} else {
			info.Host, info.Resource = "", info.Host
		}
	}
	return info
}

// parseMediaMTX reads MediaMTX's form, ACTION:PATH[:QUERY] or
// ACTION:PATH:USER:PASS[:QUERY] with ACTION publish or read, as MediaMTX
// splits it: on every colon, so none of the parts can hold one. Anything
// else is left to be a plain ID.
func parseMediaMTX(raw string, info *Info) bool {
	action, rest, ok := strings.Cut(raw, ":")
	if !ok {
		return false
	}
	var mode string
	switch action {
	case "publish":
		mode = ModePublish
	case "read":
		mode = ModeRequest
	default:
		return false
	}
	parts := strings.Split(rest, ":")
	if len(parts) > 4 || parts[0] == "" {
		return false
	}
	info.Mode, info.Resource = mode, parts[0]
	switch len(parts) {
	case 2:
		info.Query = parts[1]
	case 3, 4:
		info.User, info.Secret = parts[1], parts[2]
		if len(parts) == 4 {
			info.Query = parts[3]
		}
	}
	return true
}
