package srthandler

import (
	"fmt"
	"testing"
)

// States of placeholder upstreams are forgotten once idle, and their
// number is bounded: any caller can name new ones.
func TestDynamicStatesAreBounded(t *testing.T) {
	s := dynamicStateOf("192.0.2.1:9")
	s.acquire()
	if got := dynamicStateOf("192.0.2.1:9"); got != s {
		t.Fatal("a live dynamic state was not shared")
	}
	s.release()
	if got := dynamicStateOf("192.0.2.1:9"); got == s {
		t.Fatal("an idle dynamic state was kept")
	}
	dynamicStateOf("192.0.2.1:9").acquire() // kept by the line above; let it go
	dynamicStateOf("192.0.2.1:9").release()
	before := dynamicStates.Load()
	var held []*upstreamState
	for i := range maxDynamicStates + 100 {
		st := dynamicStateOf(fmt.Sprintf("192.0.2.2:%d", i+1))
		st.acquire()
		held = append(held, st)
	}
	if n := dynamicStates.Load(); n > maxDynamicStates {
		t.Fatalf("%d dynamic states kept (from %d), limit %d", n, before, maxDynamicStates)
	}
	for _, st := range held {
		st.release()
	}
	if n := dynamicStates.Load(); n != 0 {
		t.Fatalf("%d dynamic states left after all went idle", n)
	}
}
