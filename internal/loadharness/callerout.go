package loadharness

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// callerAttempt is one line of the C caller's output: CONNECTED <µs>,
// REJECTED <reason> <µs> or FAILED <why>.
type callerAttempt struct {
	connected bool
	took      time.Duration
	failure   string
}

// readCallerLog parses the attempts the C caller wrote to file.
func readCallerLog(file string) ([]callerAttempt, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []callerAttempt
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "CONNECTED":
			if len(fields) != 2 {
				continue // cut short by a stop
			}
			us, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", file, line, err)
			}
			out = append(out, callerAttempt{connected: true, took: time.Duration(us) * time.Microsecond})
		case "REJECTED":
			out = append(out, callerAttempt{failure: "rejected, reason " + strings.Join(fields[1:2], "")})
		case "FAILED":
			if len(fields) > 1 && fields[1] == "send:" {
				continue
			}
			out = append(out, callerAttempt{failure: strings.TrimPrefix(line, "FAILED ")})
		}
	}
	return out, sc.Err()
}
