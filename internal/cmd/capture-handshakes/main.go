// Command capture-handshakes records real SRT handshakes for the seed
// corpora and table tests of the wire, handshake and cookie packages.
//
// For each scenario it starts a real listener (gosrt in process, or
// libsrt's srt-live-transmit), a UDP relay on 127.0.0.1 in front of it and
// a real caller (gosrt, srt-live-transmit or ffmpeg) dialling the relay,
// and writes every handshake datagram the relay saw, plus the first few
// datagrams of every other kind, to <out>/<scenario>.txt in the format of
// package wiretest. All traffic stays on 127.0.0.1.
//
// Run it from the repository root:
//
//	go run ./internal/cmd/capture-handshakes -out internal/wire/testdata/captures
//
// Scenarios whose tools are missing are skipped with a note on stderr.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	srt "github.com/datarhei/gosrt"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
	"github.com/srtroute/caddy-l4-srt/internal/wire/wiretest"
)

const loopback = "127.0.0.1"

// keepPerKind is how many datagrams of each non-handshake kind (per
// direction) a capture keeps; every handshake and SHUTDOWN is kept.
const keepPerKind = 2

func main() {
	out := flag.String("out", "internal/wire/testdata/captures", "directory to write the captures to")
	only := flag.String("only", "", "run only the scenarios whose name contains this")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	failed := false
	for _, s := range scenarios {
		if *only != "" && !strings.Contains(s.name, *only) {
			continue
		}
		if missing := missingTools(s.tools); missing != "" {
			log.Printf("%s: skipped, %s not installed", s.name, missing)
			continue
		}
		c, err := runScenario(s)
		if err != nil {
			log.Printf("%s: %v", s.name, err)
			failed = true
			continue
		}
		var b bytes.Buffer
		if err := c.Format(&b); err != nil {
			log.Fatal(err)
		}
		path := filepath.Join(*out, s.name+".txt")
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("%s: %d datagrams -> %s", s.name, len(c.Datagrams), path)
	}
	if failed {
		os.Exit(1)
	}
}

// scenario is one caller/listener pairing.
type scenario struct {
	name  string
	notes []string
	tools []string
	// listen starts a listener on 127.0.0.1:port and returns a stop function.
	listen func(port int) (stop func(), err error)
	// call runs the caller against addr until it is done.
	call func(addr string) error
	// limit, if set, caps the datagrams recorded (a libsrt caller that is
	// rejected reconnects in a loop).
	limit int
	// dropConclusions makes the relay lose the caller's first conclusions,
	// to record its retransmissions.
	dropConclusions int
}

const (
	passphrase = "capture-secret-1"
	rejectWire = 2403 // SRT_REJX_FORBIDDEN (1403) on the wire
)

var scenarios = []scenario{
	{
		name:   "gosrt-plain",
		notes:  []string{"gosrt v0.11.0 caller -> gosrt v0.11.0 listener, stream ID \"#!::r=live/cam1,m=publish\""},
		listen: gosrtListener("", nil),
		call:   gosrtCaller("#!::r=live/cam1,m=publish", ""),
	},
	{
		name:   "gosrt-passphrase",
		notes:  []string{"gosrt v0.11.0 caller -> gosrt v0.11.0 listener, passphrase (KMREQ/KMRSP), stream ID \"live/secure\""},
		listen: gosrtListener(passphrase, nil),
		call:   gosrtCaller("live/secure", passphrase),
	},
	{
		name:   "gosrt-rejected",
		notes:  []string{"gosrt v0.11.0 caller -> gosrt v0.11.0 listener that rejects with 1403 (wire 2403), stream ID \"#!::u=mallory,r=live/x\""},
		listen: gosrtListener("", func(string) bool { return false }),
		call:   gosrtCaller("#!::u=mallory,r=live/x", ""),
	},
	{
		name:   "gosrt-utf8-to-libsrt",
		notes:  []string{"gosrt v0.11.0 caller -> srt-live-transmit (libsrt 1.5.1) listener, UTF-8 stream ID \"#!::h=żółw.example/app/straße,m=publish,x-key=a=b\""},
		tools:  []string{"srt-live-transmit"},
		listen: sltListener(""),
		call:   gosrtCaller("#!::h=żółw.example/app/straße,m=publish,x-key=a=b", ""),
	},
	{
		name:   "libsrt-plain",
		notes:  []string{"srt-live-transmit (libsrt 1.5.1) caller -> srt-live-transmit listener, stream ID \"#!::h=vhost/app/stream,m=publish\""},
		tools:  []string{"srt-live-transmit"},
		listen: sltListener(""),
		call:   sltCaller("#!::h=vhost/app/stream,m=publish", ""),
	},
	{
		name:   "libsrt-passphrase",
		notes:  []string{"srt-live-transmit (libsrt 1.5.1) caller -> srt-live-transmit listener, passphrase (KMREQ/KMRSP), stream ID \"hello\""},
		tools:  []string{"srt-live-transmit"},
		listen: sltListener(passphrase),
		call:   sltCaller("hello", passphrase),
	},
	{
		name:   "libsrt-rejected-by-gosrt",
		notes:  []string{"srt-live-transmit (libsrt 1.5.1) caller -> gosrt v0.11.0 listener that rejects with 1403 (wire 2403), stream ID \"#!::r=live/denied\""},
		tools:  []string{"srt-live-transmit"},
		listen: gosrtListener("", func(string) bool { return false }),
		call:   sltCaller("#!::r=live/denied", ""),
		limit:  8,
	},
	{
		name:            "libsrt-conclusion-retransmit",
		notes:           []string{"srt-live-transmit (libsrt 1.5.1) caller -> srt-live-transmit listener, stream ID \"live/retry\"; the relay lost the caller's first two conclusions (recorded, not forwarded)"},
		tools:           []string{"srt-live-transmit"},
		listen:          sltListener(""),
		call:            sltCaller("live/retry", ""),
		dropConclusions: 2,
	},
	{
		name:   "ffmpeg-to-libsrt",
		notes:  []string{"ffmpeg (libsrt 1.5.1) caller -> srt-live-transmit listener, stream ID \"#!::r=live/ffmpeg,m=publish\""},
		tools:  []string{"srt-live-transmit", "ffmpeg"},
		listen: sltListener(""),
		call:   ffmpegCaller("#!::r=live/ffmpeg,m=publish"),
	},
}

func missingTools(tools []string) string {
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return t
		}
	}
	return ""
}

func runScenario(s scenario) (*wiretest.Capture, error) {
	port, err := peer.FreeUDPPort()
	if err != nil {
		return nil, err
	}
	stop, err := s.listen(port)
	if err != nil {
		return nil, fmt.Errorf("starting listener: %w", err)
	}
	defer stop()
	r, err := newRelay(fmt.Sprintf("%s:%d", loopback, port))
	if err != nil {
		return nil, err
	}
	r.limit, r.dropConclusions = s.limit, s.dropConclusions
	callErr := s.call(r.addr())
	// Let the last datagrams (SHUTDOWN, a rejection's echo) arrive.
	time.Sleep(300 * time.Millisecond)
	r.close()
	c := &wiretest.Capture{Name: s.name, Notes: append([]string{"recorded by internal/cmd/capture-handshakes"}, s.notes...), Datagrams: r.recorded()}
	if callErr != nil {
		c.Notes = append(c.Notes, "caller: "+callErr.Error())
	}
	if !hasHandshake(c) {
		return nil, fmt.Errorf("no handshake recorded (caller: %v)", callErr)
	}
	return c, nil
}

func hasHandshake(c *wiretest.Capture) bool {
	for _, d := range c.Datagrams {
		if _, ok := wire.HandshakeTypeOf(d.Bytes); ok {
			return true
		}
	}
	return false
}

// relay forwards datagrams between callers and one listener and records them.
type relay struct {
	front   *net.UDPConn
	backend *net.UDPAddr

	limit           int
	dropConclusions int

	mu     sync.Mutex
	backs  map[string]*net.UDPConn
	rec    []wiretest.Datagram
	counts map[string]int
	wg     sync.WaitGroup
}

func newRelay(backend string) (*relay, error) {
	ba, err := net.ResolveUDPAddr("udp4", backend)
	if err != nil {
		return nil, err
	}
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(loopback)})
	if err != nil {
		return nil, err
	}
	r := &relay{front: front, backend: ba, backs: map[string]*net.UDPConn{}, counts: map[string]int{}}
	r.wg.Add(1)
	go r.fromCallers()
	return r, nil
}

func (r *relay) addr() string { return r.front.LocalAddr().String() }

func (r *relay) fromCallers() {
	defer r.wg.Done()
	buf := make([]byte, wire.MaxDatagram)
	for {
		n, from, err := r.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		back, err := r.backFor(from)
		if err != nil {
			log.Printf("relay: %v", err)
			continue
		}
		r.record(true, buf[:n])
		if r.loseConclusion(buf[:n]) {
			continue
		}
		_, _ = back.Write(buf[:n])
	}
}

func (r *relay) backFor(caller *net.UDPAddr) (*net.UDPConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.backs[caller.String()]; c != nil {
		return c, nil
	}
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(loopback)}, r.backend)
	if err != nil {
		return nil, err
	}
	r.backs[caller.String()] = c
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, wire.MaxDatagram)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP port unreachable after the listener left
			}
			r.record(false, buf[:n])
			_, _ = r.front.WriteToUDP(buf[:n], caller)
		}
	}()
	return c, nil
}

// record keeps every handshake and SHUTDOWN and the first keepPerKind
// datagrams of every other kind per direction.
func (r *relay) record(fromCaller bool, b []byte) {
	kind := "data"
	if wire.IsControl(b) {
		kind = wire.ControlTypeOf(b).String()
	} else if len(b) < wire.HeaderLen {
		kind = "runt"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limit > 0 && len(r.rec) >= r.limit {
		return
	}
	if kind != "handshake" && kind != "shutdown" {
		key := fmt.Sprintf("%t/%s", fromCaller, kind)
		if r.counts[key] >= keepPerKind {
			return
		}
		r.counts[key]++
	}
	r.rec = append(r.rec, wiretest.Datagram{FromCaller: fromCaller, Bytes: append([]byte(nil), b...)})
}

// loseConclusion reports whether to drop this caller datagram.
func (r *relay) loseConclusion(b []byte) bool {
	if t, ok := wire.HandshakeTypeOf(b); !ok || t != wire.HSConclusion {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dropConclusions > 0 {
		r.dropConclusions--
		return true
	}
	return false
}

func (r *relay) recorded() []wiretest.Datagram {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wiretest.Datagram(nil), r.rec...)
}

func (r *relay) close() {
	r.front.Close()
	r.mu.Lock()
	for _, c := range r.backs {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// payload is what every caller sends: a few TS-sized chunks.
var payload = bytes.Repeat([]byte("capture-handshakes payload "), 200)

// gosrtListener serves one gosrt listener; accept (nil: accept all)
// decides per stream ID, and a refused caller gets rejectWire.
func gosrtListener(pass string, accept func(streamID string) bool) func(port int) (func(), error) {
	return func(port int) (func(), error) {
		cfg := srt.DefaultConfig()
		cfg.Passphrase = pass
		ln, err := srt.Listen("srt", fmt.Sprintf("%s:%d", loopback, port), cfg)
		if err != nil {
			return nil, err
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				req, err := ln.Accept2()
				if err != nil {
					return
				}
				if accept != nil && !accept(req.StreamId()) {
					req.Reject(srt.RejectionReason(rejectWire))
					continue
				}
				if pass != "" {
					if err := req.SetPassphrase(pass); err != nil {
						req.Reject(srt.REJ_BADSECRET)
						continue
					}
				}
				conn, err := req.Accept()
				if err != nil {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = io.Copy(io.Discard, conn)
					conn.Close()
				}()
			}
		}()
		return func() { ln.Close(); wg.Wait() }, nil
	}
}

// gosrtCaller dials with gosrt, sends the payload, idles long enough for a
// keepalive and closes (SHUTDOWN).
func gosrtCaller(streamID, pass string) func(addr string) error {
	return func(addr string) error {
		cfg := srt.DefaultConfig()
		cfg.StreamId = streamID
		cfg.Passphrase = pass
		conn, err := srt.Dial("srt", addr, cfg)
		if err != nil {
			return err
		}
		for chunk := range slices.Chunk(payload, 1316) {
			if _, err := conn.Write(chunk); err != nil {
				conn.Close()
				return err
			}
		}
		time.Sleep(1500 * time.Millisecond)
		return conn.Close()
	}
}

// procs started by the scenarios; each is stopped by its own stop function.
func startProc(name string, args []string, stdin io.Reader) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = stdin
	cmd.Stdout = io.Discard
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

func stopProc(cmd *exec.Cmd) {
	if cmd.ProcessState == nil {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

func srtURL(host string, port int, q ...string) string {
	return fmt.Sprintf("srt://%s:%d?%s", host, port, strings.Join(q, "&"))
}

// sltListener runs srt-live-transmit as a listener writing to stdout.
func sltListener(pass string) func(port int) (func(), error) {
	return func(port int) (func(), error) {
		q := []string{"mode=listener"}
		if pass != "" {
			q = append(q, "passphrase="+pass)
		}
		cmd, err := startProc("srt-live-transmit", []string{srtURL(loopback, port, q...), "file://con"}, nil)
		if err != nil {
			return nil, err
		}
		time.Sleep(300 * time.Millisecond) // let it bind
		return func() { stopProc(cmd) }, nil
	}
}

// sltCaller runs srt-live-transmit as a caller reading the payload from
// stdin, then idles and closes its stdin so it ends (and sends SHUTDOWN).
func sltCaller(streamID, pass string) func(addr string) error {
	return func(addr string) error {
		host, port, err := splitAddr(addr)
		if err != nil {
			return err
		}
		q := []string{"streamid=" + streamID}
		if pass != "" {
			q = append(q, "passphrase="+pass)
		}
		pr, pw := io.Pipe()
		cmd, err := startProc("srt-live-transmit", []string{"file://con", srtURL(host, port, q...)}, pr)
		if err != nil {
			return err
		}
		_, _ = pw.Write(payload)
		time.Sleep(1500 * time.Millisecond)
		pw.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Signal(os.Interrupt)
			return <-done
		}
	}
}

// ffmpegCaller publishes two seconds of test pattern.
func ffmpegCaller(streamID string) func(addr string) error {
	return func(addr string) error {
		host, port, err := splitAddr(addr)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
			"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2",
			"-c:v", "mpeg2video", "-f", "mpegts", srtURL(host, port, "streamid="+streamID))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
}

func splitAddr(addr string) (string, int, error) {
	a, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return "", 0, err
	}
	return a.IP.String(), a.Port, nil
}
