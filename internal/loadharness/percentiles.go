package loadharness

import (
	"slices"
	"time"
)

// Durations is a sample of times, e.g. connect times.
type Durations []time.Duration

// Percentile returns the p-th percentile (0 < p ≤ 100) by nearest rank; 0
// for an empty sample.
func (d Durations) Percentile(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}
