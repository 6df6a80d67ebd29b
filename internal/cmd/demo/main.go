// Command demo runs the plugin's main job end to end on one machine: two
// SRT origins (srt-backend), Caddy built with the plugin in front of them
// on one UDP port, two generated streams published to different resources,
// one played back, one caller rejected; then it prints what went where
// and exits non-zero if anything landed in the wrong place.
//
//	demo -caddy .demo/caddy -backend .demo/srt-backend -config examples/demo/Caddyfile
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	srt "github.com/datarhei/gosrt"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

const (
	proxyAddr = "127.0.0.1:10080"
	adminAddr = "127.0.0.1:2999"
)

type origin struct {
	name, srt, stats string
}

var origins = []origin{
	{"origin-a", "127.0.0.1:10001", "127.0.0.1:10011"},
	{"origin-b", "127.0.0.1:10002", "127.0.0.1:10012"},
}

func main() {
	caddyBin := flag.String("caddy", ".demo/caddy", "Caddy built with the plugin")
	backendBin := flag.String("backend", ".demo/srt-backend", "the srt-backend command")
	config := flag.String("config", "examples/demo/Caddyfile", "the proxy's Caddyfile")
	seconds := flag.Float64("seconds", 3, "how long to publish")
	rate := flag.Int("kbps", 2000, "publishing rate per stream, kbit/s")
	logDir := flag.String("logs", ".demo", "where process logs go")
	flag.Parse()
	err := run(*caddyBin, *backendBin, *config, *logDir, time.Duration(*seconds*float64(time.Second)), *rate)
	logs := filepath.Join(*logDir, "caddy.log")
	for _, o := range origins {
		logs += ", " + filepath.Join(*logDir, o.name+".log")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		fmt.Fprintln(os.Stderr, "logs:", logs)
		os.Exit(1)
	}
	fmt.Println("logs:", logs, "(the proxy's session and rejection lines are in caddy.log)")
}

func run(caddyBin, backendBin, config, logDir string, dur time.Duration, kbps int) error {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	var procs procGroup
	defer procs.stop()
	for _, o := range origins {
		if err := procs.start(logDir, o.name, backendBin, "-name", o.name, "-listen", o.srt, "-stats", o.stats); err != nil {
			return err
		}
	}
	if err := procs.start(logDir, "caddy", caddyBin, "run", "--config", config, "--adapter", "caddyfile"); err != nil {
		return err
	}
	fmt.Printf("proxy on udp/%s (Caddy + caddy-l4-srt, config %s), origins %s and %s\n\n",
		proxyAddr, config, origins[0].srt, origins[1].srt)
	if err := waitReady(10 * time.Second); err != nil {
		return fmt.Errorf("%w (see %s)", err, filepath.Join(logDir, "caddy.log"))
	}

	direct, err := connectTime(origins[0].srt, "#!::r=warmup/direct,m=request")
	if err != nil {
		return fmt.Errorf("direct connect to %s: %w", origins[0].name, err)
	}

	rows := []*row{
		{id: "#!::r=live/cam1,m=publish", want: "origin-a"},
		{id: "#!::r=news/desk,m=publish", want: "origin-b"},
		{id: "#!::r=live/cam1,m=request", want: "origin-a"},
		{id: "#!::r=secret/plans,m=publish", wantReject: 1403},
	}
	for _, r := range rows {
		start := time.Now()
		r.conn, r.err = testpeer.Dial(proxyAddr, r.id, testpeer.DialOptions{})
		r.connect = time.Since(start)
		if r.err != nil && r.wantReject == 0 {
			return fmt.Errorf("%s: %w", r.id, r.err)
		}
	}
	players := rows[2:3]
	var wg sync.WaitGroup
	for _, r := range players {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				n, err := r.conn.Read(buf)
				if err != nil {
					return
				}
				r.played.Add(uint64(n))
			}
		}()
	}
	publishers := rows[:2]
	for _, r := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sent = publish(r.conn, dur, kbps)
		}()
	}
	time.Sleep(dur + time.Second) // publish, then let the last packets land
	for _, r := range rows {
		if r.conn != nil {
			r.conn.Close()
		}
	}
	wg.Wait()

	snaps := map[string]srtbackend.Snapshot{}
	for _, o := range origins {
		s, err := stats(o.stats)
		if err != nil {
			return fmt.Errorf("stats of %s: %w", o.name, err)
		}
		snaps[o.name] = s
	}
	return report(rows, snaps, direct)
}

type row struct {
	id         string
	want       string
	wantReject uint32
	conn       srt.Conn
	err        error
	connect    time.Duration
	sent       uint64
	played     atomic.Uint64
}

func report(rows []*row, snaps map[string]srtbackend.Snapshot, direct time.Duration) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM ID\tCONNECT\tWENT TO\tSENT\tAT ORIGIN\tPLAYED BACK")
	var problems []string
	for _, r := range rows {
		if r.wantReject != 0 {
			code, ok := testpeer.RejectReason(r.err)
			fmt.Fprintf(tw, "%s\t%s\trejected: %d\t-\t-\t-\n", r.id, ms(r.connect), code)
			if !ok || code != r.wantReject {
				problems = append(problems, fmt.Sprintf("%s: want rejection %d, got %v", r.id, r.wantReject, r.err))
			}
			continue
		}
		went := []string{}
		var atOrigin uint64
		for name, s := range snaps {
			for _, c := range s.Conns {
				if c.StreamID == r.id {
					went = append(went, name+" ("+s.Addr+")")
					if r.sent > 0 {
						atOrigin = s.Published[resourceOf(r.id)]
					}
				}
			}
		}
		where := strings.Join(went, ", ")
		sent, at, played := "-", "-", "-"
		if r.sent > 0 {
			sent, at = kb(r.sent), kb(atOrigin)
			if atOrigin != r.sent {
				problems = append(problems, fmt.Sprintf("%s: sent %d bytes, origin got %d", r.id, r.sent, atOrigin))
			}
		} else {
			played = kb(r.played.Load())
			if r.played.Load() == 0 {
				problems = append(problems, r.id+": played nothing back")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.id, ms(r.connect), where, sent, at, played)
		if len(went) != 1 || !strings.HasPrefix(where, r.want+" ") {
			problems = append(problems, fmt.Sprintf("%s: went to %q, want %s", r.id, where, r.want))
		}
	}
	tw.Flush()
	fmt.Printf("\ndirect connect to %s, for comparison: %s\n", origins[0].name, ms(direct))
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Println("demo OK: every stream reached the origin its route names, byte for byte")
	return nil
}

func resourceOf(id string) string {
	for _, kv := range strings.Split(strings.TrimPrefix(id, "#!::"), ",") {
		if v, ok := strings.CutPrefix(kv, "r="); ok {
			return v
		}
	}
	return id
}

// publish sends MPEG-TS-sized packets (7 × 188 bytes) at kbps for dur.
func publish(c srt.Conn, dur time.Duration, kbps int) uint64 {
	pkt := bytes.Repeat([]byte{0x47, 0x1f, 0xff, 0x10}, 1316/4)
	interval := time.Duration(float64(time.Second) * float64(len(pkt)*8) / float64(kbps*1000))
	var sent uint64
	tick := time.NewTicker(interval)
	defer tick.Stop()
	end := time.Now().Add(dur)
	for now := range tick.C {
		if now.After(end) {
			break
		}
		n, err := c.Write(pkt)
		if err != nil {
			break
		}
		sent += uint64(n)
	}
	return sent
}

func connectTime(addr, id string) (time.Duration, error) {
	start := time.Now()
	c, err := testpeer.Dial(addr, id, testpeer.DialOptions{})
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	c.Close()
	return d, nil
}

func waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		// A rejected caller proves the whole path: listener, matcher, handler.
		_, err := testpeer.Dial(proxyAddr, "#!::r=secret/probe", testpeer.DialOptions{Timeout: 500 * time.Millisecond})
		if _, ok := testpeer.RejectReason(err); ok {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("the proxy did not come up")
}

func stats(addr string) (srtbackend.Snapshot, error) {
	var s srtbackend.Snapshot
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
func kb(n uint64) string        { return fmt.Sprintf("%.1f KB", float64(n)/1000) }

// procGroup runs child processes and stops them all at the end.
type procGroup struct{ procs []*peer.Process }

func (g *procGroup) start(logDir, name, bin string, args ...string) error {
	f, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own copy
	p, err := peer.Start(peer.ProcOptions{Stdout: f, Stderr: f}, bin, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	g.procs = append(g.procs, p)
	return nil
}

func (g *procGroup) stop() { peer.StopAll(g.procs...) }
