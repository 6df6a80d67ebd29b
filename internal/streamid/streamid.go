// Package streamid reads an SRT stream ID the way SRT servers do: libsrt's
// access-control syntax (#!::key=value,...), SRS's legacy h=app/stream and
// h=vhost/app/stream forms, and plain IDs, which are the resource itself.
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
}

// Parse reads a stream ID. It never fails: whatever does not fit the
// access-control syntax is a plain ID, which names the resource.
func Parse(raw string) Info {
	info := Info{Raw: raw, Mode: ModeRequest, Type: "stream"}
	body, ok := strings.CutPrefix(raw, Prefix)
	if !ok {
		info.Resource = raw
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
