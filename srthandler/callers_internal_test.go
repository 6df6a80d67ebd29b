package srthandler

import "testing"

// A caller that lingers holds one place until its handler is done, and
// gives it back once, however often it is let go meanwhile.
func TestLingerPlacesAreGivenBack(t *testing.T) {
	before := lingering.Load()
	var hd handling
	hd.letGo()
	hd.letGo()
	if !hd.lingers || lingering.Load() != before+1 {
		t.Fatalf("lingers %v, places taken %d, want one", hd.lingers, lingering.Load()-before)
	}
	hd.done()
	hd.done()
	if lingering.Load() != before {
		t.Fatalf("places taken after done: %d, want none", lingering.Load()-before)
	}
}
