package streamid

import "strings"

// Mask replaces a secret wherever a stream ID is shown: logs, the admin
// API, placeholders meant for logs.
const Mask = "***"

// SessionKey is the access-control key whose value is a secret (a token or
// a password; libsrt calls it the session ID). Its value is never shown.
const SessionKey = "s"

// Redact returns a copy of info that is safe to show: the values of the s
// key, of each key in secretKeys (an auth jwt route's param) and MediaMTX's
// password replaced by Mask, in Raw and in the parsed fields. Everything
// else is byte for byte what the caller sent, so a redacted ID still tells
// an operator what the caller asked for. The raw ID itself is left for
// the upstream, which must get it unchanged.
func (info Info) Redact(secretKeys ...string) Info {
	out := info
	out.Raw = Redact(info.Raw, secretKeys...)
	if info.Resource == info.Raw {
		// A plain ID is its own resource: a MediaMTX-shaped one read as
		// plain still holds the password.
		out.Resource = out.Raw
	}
	if out.Session != "" {
		out.Session = Mask
	}
	if out.Secret != "" {
		out.Secret = Mask
	}
	cloned := false // info.Keys is shared: write only to a copy
	for k, v := range info.Keys {
		if v != "" && isSecretKey(k, secretKeys) {
			if !cloned {
				out.Keys, cloned = cloneMap(info.Keys), true
			}
			out.Keys[k] = Mask
		}
	}
	return out
}

// Redacted is info.Raw with its secrets replaced by Mask; see Redact.
func (info *Info) Redacted(secretKeys ...string) string {
	return Redact(info.Raw, secretKeys...)
}

// Redact returns the stream ID raw with the value of every secret key
// (s and secretKeys, every occurrence) and MediaMTX's password replaced by
// Mask. It costs one pass over raw and allocates only when there is
// something to hide.
func Redact(raw string, secretKeys ...string) string {
	if body, ok := strings.CutPrefix(raw, Prefix); ok {
		return redactPairs(body, secretKeys)
	}
	if start, end, ok := MediaMTXPassword(raw); ok && end > start {
		return raw[:start] + Mask + raw[end:]
	}
	return raw
}

func redactPairs(body string, secretKeys []string) string {
	var b strings.Builder
	changed := false
	rest := body
	for first := true; ; first = false {
		pair, tail, more := strings.Cut(rest, ",")
		if !first {
			b.WriteByte(',')
		}
		key, value, hasValue := strings.Cut(pair, "=")
		if hasValue && value != "" && isSecretKey(key, secretKeys) {
			b.WriteString(key)
			b.WriteString("=" + Mask)
			changed = true
		} else {
			b.WriteString(pair)
		}
		if !more {
			break
		}
		rest = tail
	}
	if !changed {
		return Prefix + body
	}
	return Prefix + b.String()
}

// MediaMTXPassword locates the password of a MediaMTX stream ID,
// "publish:PATH:USER:PASS[:QUERY]" or "read:PATH:USER:PASS[:QUERY]": it is
// raw[start:end]. MediaMTX splits such an ID on every colon and knows only
// these shapes; an ID with more fields still has its fourth hidden, since
// hiding too much is the safe mistake.
func MediaMTXPassword(raw string) (start, end int, ok bool) {
	action, rest, found := strings.Cut(raw, ":")
	if !found || (action != "publish" && action != "read") {
		return 0, 0, false
	}
	start = len(action) + 1
	for i := 0; i < 2; i++ { // past PATH and USER
		j := strings.IndexByte(rest, ':')
		if j < 0 {
			return 0, 0, false
		}
		start += j + 1
		rest = rest[j+1:]
	}
	end = start + len(rest)
	if j := strings.IndexByte(rest, ':'); j >= 0 {
		end = start + j
	}
	return start, end, true
}

func isSecretKey(key string, secretKeys []string) bool {
	if key == SessionKey {
		return true
	}
	for _, k := range secretKeys {
		if key == k {
			return true
		}
	}
	return false
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
