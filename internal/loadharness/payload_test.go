package loadharness

import (
	"testing"
	"time"
)

func TestSeqTracker(t *testing.T) {
	payload := NewPayload()
	var tr SeqTracker
	for _, seq := range []uint64{0, 1, 2, 5, 6, 6, 3, 7} {
		StampSeq(payload, seq)
		tr.Add(payload)
	}
	// 3 and 4 were skipped over when 5 arrived; the second 6 and the late
	// 3 are not new.
	if tr.Packets != 8 || tr.Missing != 2 || tr.Late != 2 || tr.Unique() != 6 {
		t.Errorf("got packets %d missing %d late %d unique %d; want 8, 2, 2, 6", tr.Packets, tr.Missing, tr.Late, tr.Unique())
	}
	if tr.Bytes != 8*PayloadSize {
		t.Errorf("bytes %d, want %d", tr.Bytes, 8*PayloadSize)
	}
}

func TestPercentile(t *testing.T) {
	var d Durations
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{1, 1}, {50, 50}, {90, 90}, {99, 99}, {100, 100}} {
		if got := d.Percentile(c.p); got != c.want*time.Millisecond {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want*time.Millisecond)
		}
	}
	if got := (Durations{}).Percentile(50); got != 0 {
		t.Errorf("empty sample: %v", got)
	}
}
