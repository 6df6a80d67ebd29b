//go:build !race

package srthandler_test

// raceDetector: see race_on_test.go.
const raceDetector = false
