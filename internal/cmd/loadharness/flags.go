package main

import (
	"fmt"
	"strconv"
	"strings"

	lh "github.com/srtroute/caddy-l4-srt/internal/loadharness"
)

func parseLists(c *config, paths, scenarios, kinds, concurrent, concurrentKind, stormKinds string) error {
	for _, s := range splitList(paths) {
		p, err := lh.ParsePath(s)
		if err != nil {
			return err
		}
		c.paths = append(c.paths, p)
	}
	c.scenarios = map[string]bool{}
	for _, s := range splitList(scenarios) {
		known := false
		for _, k := range allScenarios {
			known = known || k == s
		}
		if !known {
			return fmt.Errorf("unknown scenario %q (want some of %s)", s, strings.Join(allScenarios, ","))
		}
		c.scenarios[s] = true
	}
	for _, s := range splitList(kinds) {
		k, err := parseKind(s)
		if err != nil {
			return err
		}
		c.singleKinds = append(c.singleKinds, k)
	}
	for _, s := range splitList(stormKinds) {
		k, err := parseKind(s)
		if err != nil {
			return err
		}
		c.stormKinds = append(c.stormKinds, k)
	}
	for _, s := range splitList(concurrent) {
		count, rate, _ := strings.Cut(s, "@")
		n, err1 := strconv.Atoi(count)
		mbps, err2 := strconv.ParseFloat(rate, 64)
		if err1 != nil || err2 != nil || n < 1 || mbps <= 0 {
			return fmt.Errorf("-concurrent: %q: want N@Mbit/s, e.g. 100@1", s)
		}
		c.concurrent = append(c.concurrent, streamCount{n, mbps})
	}
	var err error
	c.concurrentKind, err = parseKind(concurrentKind)
	return err
}

func parseKind(s string) (lh.PeerKind, error) {
	switch k := lh.PeerKind(s); k {
	case lh.Gosrt, lh.Libsrt:
		return k, nil
	}
	return "", fmt.Errorf("unknown peer kind %q (want gosrt or libsrt)", s)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
