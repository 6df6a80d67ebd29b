package loadharness

import (
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Probes through no path at all: each one counted once, with a delay the
// kernel's receive time makes plausible; other data packets are not
// probes.
func TestProbeDelays(t *testing.T) {
	o, err := StartKeepaliveOrigin()
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	k, _, err := DialKeepalive(o.Addr(), "#!::r=probe", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	const n = 200
	if err := k.SendProbes(n, 100*time.Microsecond, 1316); err != nil {
		t.Fatal(err)
	}
	other := appendProbe(nil, 1, k.peer, 0, time.Now(), 1316)
	other[wire.HeaderLen] ^= 0xff
	if _, err := k.conn.Write(other); err != nil {
		t.Fatal(err)
	}
	var got Delays
	deadline := time.Now().Add(3 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = append(got, o.ProbeDelays()...)
	}
	time.Sleep(50 * time.Millisecond)
	got = append(got, o.ProbeDelays()...)
	if len(got) != n {
		t.Fatalf("%d probes arrived, want %d", len(got), n)
	}
	for _, d := range got {
		if d <= 0 || d > time.Second {
			t.Fatalf("a probe took %v", d)
		}
	}
	if _, ok := probeSent(make([]byte, probeHeader-1)); ok {
		t.Error("a datagram too short to hold a send time was taken for a probe")
	}
}
