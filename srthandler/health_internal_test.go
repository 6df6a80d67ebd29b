package srthandler

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
)

// An upstream that was down when its last health watcher left must not
// stay out forever: nothing would ever bring it back.
func TestHealthVerdictClearedWhenUnwatched(t *testing.T) {
	u := &upstreamState{addr: "127.0.0.1:1"}
	release := u.watch(probeConfig{interval: time.Hour, timeout: time.Millisecond, passes: 1, fails: 1}, zap.NewNop())
	u.recordProbe(errors.New("dead"), probeConfig{passes: 1, fails: 1}, zap.NewNop())
	if u.healthy(time.Now()) {
		t.Fatal("a failed check did not take the upstream out")
	}
	release()
	if !u.healthy(time.Now()) {
		t.Fatal("the upstream stayed out after its checks stopped")
	}
}
