package fleet

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// srs7 is what a real SRS 7 origin posts (interval 1; device_id origin9;
// ports on; SRS_DEVICE_IP=127.0.0.1), byte for byte.
const srs7 = `{"device_id":"origin9","ip":"127.0.0.1","server":"vid-e12689h","service":"7cl35azv","pid":"1656","rtmp":["11945"],"http":["18090"],"api":["11995"],"srt":["udp://0.0.0.0:9209"]}`

func TestParseHeartbeatSRS7(t *testing.T) {
	hb, err := ParseHeartbeat([]byte(srs7))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	o, err := hb.Origin(now, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9209")}
	if o.ID != "vid-e12689h" || o.DeviceID != "origin9" || len(o.SRT) != 1 || o.SRT[0] != want[0] ||
		!o.Expires.Equal(now.Add(30*time.Second)) {
		t.Fatalf("origin = %+v", o)
	}
}

func TestParseHeartbeatRefuses(t *testing.T) {
	cases := map[string]string{
		"not json":        `{"device_id":`,
		"no id":           `{"ip":"127.0.0.1","srt":["9000"]}`,
		"no srt":          `{"server":"a","ip":"127.0.0.1","rtmp":["1935"]}`,
		"bad srt":         `{"server":"a","ip":"127.0.0.1","srt":["udp://0.0.0.0:"]}`,
		"port 0":          `{"server":"a","ip":"127.0.0.1","srt":["0"]}`,
		"port too big":    `{"server":"a","ip":"127.0.0.1","srt":["70000"]}`,
		"no ip":           `{"server":"a","srt":["9000"]}`,
		"unspecified ip":  `{"server":"a","ip":"0.0.0.0","srt":["9000"]}`,
		"hostname for ip": `{"server":"a","ip":"origin.internal","srt":["9000"]}`,
		"long id":         `{"server":"` + strings.Repeat("x", 200) + `","ip":"127.0.0.1","srt":["9000"]}`,
		"many ports":      `{"server":"a","ip":"127.0.0.1","srt":["1","2","3","4","5","6","7","8","9"]}`,
		"huge body":       `{"server":"a","ip":"127.0.0.1","srt":["9000"],"x":"` + strings.Repeat("x", MaxHeartbeatBytes) + `"}`,
		"wrong types":     `{"server":1,"ip":"127.0.0.1","srt":"9000"}`,
	}
	for name, body := range cases {
		hb, err := ParseHeartbeat([]byte(body))
		if err == nil {
			_, err = hb.Origin(time.Now(), time.Second)
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRegistryExpiresAndBounds(t *testing.T) {
	r := NewRegistry(2)
	t0 := time.Unix(1000, 0)
	reg := func(id string, at time.Time) error {
		return r.Register(Origin{ID: id, SRT: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9000")}, Seen: at, Expires: at.Add(3 * time.Second)})
	}
	if err := reg("a", t0); err != nil {
		t.Fatal(err)
	}
	if err := reg("b", t0); err != nil {
		t.Fatal(err)
	}
	if err := reg("c", t0.Add(time.Second)); err != ErrFull {
		t.Fatalf("third origin: %v, want ErrFull", err)
	}
	if err := reg("a", t0.Add(2*time.Second)); err != nil {
		t.Fatalf("refreshing a known origin when full: %v", err)
	}
	if live := r.Live(t0.Add(4 * time.Second)); len(live) != 1 || live[0].ID != "a" {
		t.Fatalf("live after b expired: %+v", live)
	}
	// b expired: its room is free again.
	if err := reg("c", t0.Add(4*time.Second)); err != nil {
		t.Fatalf("after an expiry: %v", err)
	}
}

func TestRegistryAllowlists(t *testing.T) {
	r := NewRegistry(0)
	ip := netip.MustParseAddr("192.0.2.7")
	if !r.Admits(ip) {
		t.Fatal("no route with an allowlist: every origin is admitted")
	}
	release := r.Serve([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	if r.Admits(ip) || !r.Admits(netip.MustParseAddr("10.1.2.3")) {
		t.Fatal("allowlist not applied")
	}
	release()
	if !r.Admits(ip) {
		t.Fatal("released allowlist still applied")
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	f.Add([]byte(srs7))
	f.Add([]byte(`{"server":"a","ip":"::1","srt":["udp://[::]:9000"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		hb, err := ParseHeartbeat(body)
		if err != nil {
			return
		}
		o, err := hb.Origin(time.Now(), time.Second)
		if err != nil {
			return
		}
		if o.ID == "" || len(o.SRT) == 0 || len(o.SRT) > maxSRTPorts {
			t.Fatalf("accepted origin %+v", o)
		}
		for _, ap := range o.SRT {
			if ap.Port() == 0 || !ap.Addr().IsValid() {
				t.Fatalf("bad endpoint %v", ap)
			}
		}
	})
}
