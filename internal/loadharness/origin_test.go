package loadharness

import (
	"testing"
	"time"
)

// The origin counts, per stream ID, what each caller delivered, and
// keeps the count once the caller has gone.
func TestOriginCountsPerStream(t *testing.T) {
	o, err := StartOrigin()
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	const packets = 20
	for _, id := range []string{"load/a", "load/b"} {
		c, _, err := DialGosrt(o.Addr(), id, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		pub := &gosrtPublisher{conn: c, payload: NewPayload()}
		for seq := range uint64(packets) {
			if err := pub.Send(seq); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for o.Delivery(id).Packets < packets && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		pub.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for o.Live() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := o.Accepted(); n != 2 {
		t.Errorf("accepted %d connections, want 2", n)
	}
	if n := o.Live(); n != 0 {
		t.Errorf("%d connections live after both callers closed", n)
	}
	for _, id := range []string{"load/a", "load/b"} {
		if d := o.Delivery(id); d.Packets != packets || d.Missing != 0 || d.Bytes != packets*PayloadSize {
			t.Errorf("%s: delivery %+v, want %d packets in order", id, d.SeqTracker, packets)
		}
	}
	if d := o.Delivery("load/none"); d.Packets != 0 {
		t.Errorf("a stream nobody sent: %+v", d)
	}
}
