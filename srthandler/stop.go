package srthandler

import "sync/atomic"

// stopping is set while the process stops and its grace_period runs: new
// callers get overload (1402).
var stopping atomic.Bool
