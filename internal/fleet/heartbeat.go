package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Heartbeat is the JSON body an SRS origin posts to its heartbeat URL
// (SRS 5+, `heartbeat { ports on; }`; srt entries from SRS 6.0.156 and
// 7.0.15 on). Fields this proxy does not use are ignored.
type Heartbeat struct {
	DeviceID string   `json:"device_id"`
	IP       string   `json:"ip"`
	Server   string   `json:"server"`
	Service  string   `json:"service"`
	PID      string   `json:"pid"`
	SRT      []string `json:"srt"`
}

// Bounds on what one heartbeat may carry: SRS sends a handful of short
// strings, anything larger is not a heartbeat.
const (
	MaxHeartbeatBytes = 16 << 10
	maxIDLen          = 128
	maxSRTPorts       = 8
)

// ParseHeartbeat decodes and checks a heartbeat body.
func ParseHeartbeat(body []byte) (Heartbeat, error) {
	var hb Heartbeat
	if len(body) > MaxHeartbeatBytes {
		return hb, fmt.Errorf("heartbeat: body of %d bytes is over %d", len(body), MaxHeartbeatBytes)
	}
	if err := json.Unmarshal(body, &hb); err != nil {
		return hb, fmt.Errorf("heartbeat: %w", err)
	}
	if hb.Server == "" && hb.DeviceID == "" {
		return hb, errors.New("heartbeat: neither server nor device_id")
	}
	for _, s := range []string{hb.DeviceID, hb.Server, hb.Service, hb.PID} {
		if len(s) > maxIDLen {
			return hb, fmt.Errorf("heartbeat: a field is over %d bytes", maxIDLen)
		}
	}
	if len(hb.SRT) == 0 {
		return hb, errors.New("heartbeat: no srt port (SRS sends them from 6.0.156 / 7.0.15 on, with `ports on`)")
	}
	if len(hb.SRT) > maxSRTPorts {
		return hb, fmt.Errorf("heartbeat: over %d srt ports", maxSRTPorts)
	}
	return hb, nil
}

// Origin turns a checked heartbeat into the origin it describes, seen at
// now and expiring after expire.
func (hb Heartbeat) Origin(now time.Time, expire time.Duration) (Origin, error) {
	ip, err := netip.ParseAddr(hb.IP)
	if err != nil || ip.IsUnspecified() || ip.Zone() != "" {
		return Origin{}, fmt.Errorf("heartbeat: ip %q is not an address to reach the origin at", hb.IP)
	}
	ip = ip.Unmap()
	o := Origin{ID: hb.Server, DeviceID: hb.DeviceID, Service: hb.Service, PID: hb.PID, Seen: now, Expires: now.Add(expire)}
	if o.ID == "" {
		o.ID = hb.DeviceID
	}
	for _, entry := range hb.SRT {
		port, err := srtPort(entry)
		if err != nil {
			return Origin{}, err
		}
		ap := netip.AddrPortFrom(ip, port)
		if !containsAddrPort(o.SRT, ap) {
			o.SRT = append(o.SRT, ap)
		}
	}
	return o, nil
}

// srtPort reads the port of an srt entry: "udp://0.0.0.0:10080" as SRS
// sends it, or a bare "10080". The host in it is where SRS listens, not
// where it is reached: the heartbeat's ip says that.
func srtPort(entry string) (uint16, error) {
	s := strings.TrimPrefix(entry, "udp://")
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = s[i+1:]
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("heartbeat: srt entry %q has no port", entry)
	}
	return uint16(n), nil
}

func containsAddrPort(list []netip.AddrPort, ap netip.AddrPort) bool {
	for _, x := range list {
		if x == ap {
			return true
		}
	}
	return false
}
