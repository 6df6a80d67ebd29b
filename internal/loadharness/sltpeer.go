package loadharness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// sltPublisher is srt-live-transmit calling the target with a stream ID
// and sending what arrives on its UDP input, which a generator in the
// harness feeds.
type sltPublisher struct {
	proc      *Proc
	input     *net.UDPConn // towards srt-live-transmit's UDP input
	statsFile string
	payload   []byte
}

// startSLTPublisher starts srt-live-transmit and waits until it has
// connected. pps sets how often it writes its statistics; lifetime is its
// own exit timer, a safety net should the harness vanish.
func startSLTPublisher(procs *Procs, bin, addr, streamID string, pps float64, lifetime time.Duration) (*sltPublisher, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := peer.FreeUDPPort()
		if err != nil {
			return nil, err
		}
		statsFile := filepath.Join(procs.Dir, fmt.Sprintf("slt-stats-%d.json", port))
		every := max(10, int(pps/10)) // about ten reports a second
		proc, err := procs.Start("srt-live-transmit", bin,
			"-a:no", "-t:"+strconv.Itoa(int(lifetime.Seconds())),
			"-s:"+strconv.Itoa(every), "-pf:json", "-statsout:"+statsFile, "-f",
			"udp://127.0.0.1:"+strconv.Itoa(port),
			// srt-live-transmit takes query values verbatim.
			"srt://"+addr+"?streamid="+streamID)
		if err != nil {
			return nil, err
		}
		if lastErr = proc.WaitOutput("SRT target connected", 5*time.Second); lastErr != nil {
			proc.Stop()
			if strings.Contains(proc.Output(), "bind") { // the input port was taken meanwhile
				continue
			}
			return nil, lastErr
		}
		in, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			proc.Stop()
			return nil, err
		}
		return &sltPublisher{proc: proc, input: in, statsFile: statsFile, payload: NewPayload()}, nil
	}
	return nil, lastErr
}

func (p *sltPublisher) Send(seq uint64) error {
	StampSeq(p.payload, seq)
	_, err := p.input.Write(p.payload)
	return err
}

// SenderStats reads the last report srt-live-transmit wrote (it reports
// every few packets, so the last tenth of a second may be missing).
func (p *sltPublisher) SenderStats() (SenderStats, error) {
	f, err := os.Open(p.statsFile)
	if err != nil {
		return SenderStats{}, err
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "{") {
			last = line
		}
	}
	if last == "" {
		return SenderStats{}, fmt.Errorf("srt-live-transmit wrote no statistics to %s", p.statsFile)
	}
	var r struct {
		Send struct {
			Packets              uint64 `json:"packets"`
			PacketsRetransmitted uint64 `json:"packetsRetransmitted"`
			PacketsDropped       uint64 `json:"packetsDropped"`
		} `json:"send"`
	}
	if err := json.Unmarshal([]byte(last), &r); err != nil {
		return SenderStats{}, fmt.Errorf("%s: %w", p.statsFile, err)
	}
	return SenderStats{Packets: r.Send.Packets, Retrans: r.Send.PacketsRetransmitted, SendDrops: r.Send.PacketsDropped}, nil
}

// Close stops srt-live-transmit (it closes its SRT socket on SIGTERM).
func (p *sltPublisher) Close() error {
	p.input.Close()
	p.proc.Stop()
	return nil
}
