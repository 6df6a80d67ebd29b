//go:build race

package srthandler_test

// raceDetector: the race detector slows the proxy several times over;
// floods are paced to what it can still take in.
const raceDetector = true
