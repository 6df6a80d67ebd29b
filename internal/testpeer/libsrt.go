package testpeer

import (
	"bufio"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// The out-of-process peers: a small libsrt caller written in C (built once
// per test binary), srt-live-transmit as caller and as listener, and ffmpeg
// as publisher. Every process a test starts is stopped in its Cleanup, and
// every wait is bounded.

// InteropEnv is the environment variable that makes missing tools fatal:
// with SRT_INTEROP=required (as CI sets it) a test that needs a missing
// tool fails instead of skipping.
const InteropEnv = "SRT_INTEROP"

func interopRequired() bool { return os.Getenv(InteropEnv) == "required" }

// missing skips the test, or fails it when the interop tools are required.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if interopRequired() {
		t.Fatalf("%s (%s=required)", msg, InteropEnv)
	}
	t.Skip(msg)
}

// RequireTool returns the path of an external program, skipping the test
// when it is not installed (failing it under SRT_INTEROP=required).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s: %v", name, ErrNoTool)
	}
	return p
}

//go:embed libsrt/srtcaller.c
var srtcallerSource []byte

var srtcaller struct {
	once sync.Once
	path string
	err  error
}

// SRTCallerPath builds the C caller (libsrt/srtcaller.c) once per test
// binary and returns its path. It needs gcc and libsrt's headers and
// library (Debian: libsrt-gnutls-dev).
func SRTCallerPath(t testing.TB) string {
	t.Helper()
	RequireTool(t, "gcc")
	srtcaller.once.Do(func() { srtcaller.path, srtcaller.err = buildSRTCaller() })
	if srtcaller.err != nil {
		missing(t, "building the libsrt caller: %v", srtcaller.err)
	}
	return srtcaller.path
}

// buildSRTCaller compiles the caller into a directory keyed by the source
// and the compiler flags, so a binary built by an earlier run is reused.
func buildSRTCaller() (string, error) {
	flags, err := libsrtFlags()
	if err != nil {
		return "", err
	}
	sum := sha256.New()
	sum.Write(srtcallerSource)
	sum.Write([]byte(strings.Join(flags, " ")))
	dir := filepath.Join(os.TempDir(), "caddy-l4-srt-srtcaller-"+hex.EncodeToString(sum.Sum(nil))[:16])
	bin := filepath.Join(dir, "srtcaller")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	src := filepath.Join(dir, "srtcaller.c")
	if err := os.WriteFile(src, srtcallerSource, 0o644); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "srtcaller-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := append([]string{"-O2", "-Wall", "-o", tmp.Name(), src}, flags...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "gcc", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// Rename is atomic: concurrent test binaries never run a half-written file.
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// libsrtFlags asks pkg-config for libsrt's compiler and linker flags and
// falls back to linking libsrt-gnutls by name.
func libsrtFlags() ([]string, error) {
	if _, err := exec.LookPath("pkg-config"); err == nil {
		for _, pkg := range []string{"srt-gnutls", "srt"} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := exec.CommandContext(ctx, "pkg-config", "--cflags", "--libs", pkg).Output()
			cancel()
			if err == nil {
				return strings.Fields(string(out)), nil
			}
		}
	}
	if _, err := os.Stat("/usr/include/srt/srt.h"); err != nil {
		return nil, fmt.Errorf("libsrt headers not found (install libsrt-gnutls-dev): %w", err)
	}
	return []string{"-lsrt-gnutls"}, nil
}

// Process is an external program run by a test.
type Process struct {
	*peer.Process
	errs *peer.Buffer
}

// StopGrace is how long a stopped process gets to exit after SIGTERM
// before it is killed.
const StopGrace = peer.StopGrace

// startProcess starts prog and registers its stop in t.Cleanup. With
// withStdin the process reads a pipe the test writes to (p.Stdin()), else
// /dev/null. stdout may be nil; stderr is kept for Stderr and for failure
// reports.
func startProcess(t testing.TB, withStdin bool, stdout io.Writer, prog string, args ...string) *Process {
	t.Helper()
	p := &Process{errs: &peer.Buffer{}}
	var err error
	p.Process, err = peer.Start(peer.ProcOptions{Stdin: withStdin, Stdout: stdout, Stderr: p.errs}, prog, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.Exited() {
			p.Stop()
		}
		if t.Failed() {
			t.Logf("%s %s: exit %v; stderr:\n%s", p.Name, strings.Join(args, " "), p.Err(), p.Stderr())
		}
	})
	return p
}

// Stderr is what the process wrote to its standard error so far.
func (p *Process) Stderr() string { return p.errs.String() }

// waitStderr waits up to d for a line of standard error containing s.
func (p *Process) waitStderr(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(p.Stderr(), s) {
			return true
		}
		if p.Exited() || time.Now().After(deadline) {
			return strings.Contains(p.Stderr(), s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- the C caller ----

// CallerOptions are srtcaller's flags.
type CallerOptions struct {
	Passphrase string
	// Timeout is the connect timeout (SRTO_CONNTIMEO); libsrt's default is 3 s.
	Timeout time.Duration
	// SendPackets packets of PacketSize bytes (default 1316) are sent,
	// Interval apart, after each connect; packet i is filled with byte i.
	SendPackets int
	PacketSize  int
	Interval    time.Duration
	// Linger is how long the caller stays connected after its last packet
	// was acknowledged; 0 means the peer's latency + 100 ms, what a
	// receiver delivering on time needs.
	Linger time.Duration
	// Repeat runs that many connect/close attempts in sequence (default 1).
	Repeat int
	// RunTimeout bounds the whole run (default: enough for every attempt).
	RunTimeout time.Duration
}

// Attempt is one connect attempt of the C caller.
type Attempt struct {
	Connected bool
	// Rejected is set when srt_connect failed with SRT_ECONNREJ; Reason is
	// then srt_getrejectreason() (libsrt API numbering: 10 bad secret,
	// 1403 forbidden, ...).
	Rejected bool
	Reason   int
	// Took is how long srt_connect took, as the caller measured it.
	Took time.Duration
	// Failure is libsrt's error text for a failure that is not a rejection.
	Failure string
}

func (a Attempt) String() string {
	switch {
	case a.Connected:
		return fmt.Sprintf("connected in %v", a.Took)
	case a.Rejected:
		return fmt.Sprintf("rejected with reason %d in %v", a.Reason, a.Took)
	}
	return "failed: " + a.Failure
}

// CallerResult is what a run of the C caller printed.
type CallerResult struct {
	Attempts    []Attempt
	SentPackets int
	SentBytes   int64
	Output      string // stdout, for failure reports
	Stderr      string
	Err         error // the exit status: non-nil unless every attempt connected
}

// RunCaller runs the C caller against addr and waits for it to finish.
func RunCaller(t testing.TB, addr, streamID string, o CallerOptions) CallerResult {
	t.Helper()
	bin := SRTCallerPath(t)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{host, port, streamID}
	if o.Passphrase != "" {
		args = append(args, "--passphrase", o.Passphrase)
	}
	connect := 3 * time.Second
	if o.Timeout > 0 {
		connect = o.Timeout
		args = append(args, "--timeout-ms", strconv.FormatInt(o.Timeout.Milliseconds(), 10))
	}
	repeat := max(o.Repeat, 1)
	args = append(args, "--repeat", strconv.Itoa(repeat))
	send := time.Duration(0)
	if o.SendPackets > 0 {
		size := o.PacketSize
		if size == 0 {
			size = 1316
		}
		args = append(args, "--send-packets", strconv.Itoa(o.SendPackets),
			"--packet-size", strconv.Itoa(size),
			"--interval-us", strconv.FormatInt(o.Interval.Microseconds(), 10))
		if o.Linger > 0 {
			args = append(args, "--linger-ms", strconv.FormatInt(o.Linger.Milliseconds(), 10))
		}
		// Sending, draining the send buffer (at most 3 s) and lingering.
		send = time.Duration(o.SendPackets)*(o.Interval+time.Millisecond) + 4*time.Second + o.Linger
	}
	limit := o.RunTimeout
	if limit == 0 {
		limit = time.Duration(repeat)*(connect+send+time.Second) + 5*time.Second
	}
	var out peer.Buffer
	p := startProcess(t, false, &out, bin, args...)
	exited, exitErr := p.Wait(limit)
	if !exited {
		p.Stop()
		t.Fatalf("srtcaller %s did not finish within %v; output:\n%s\nstderr:\n%s", strings.Join(args, " "), limit, out.String(), p.Stderr())
	}
	res := CallerResult{Output: out.String(), Stderr: p.Stderr(), Err: exitErr}
	sc := bufio.NewScanner(strings.NewReader(res.Output))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "CONNECTED" && len(f) == 2:
			us, _ := strconv.ParseInt(f[1], 10, 64)
			res.Attempts = append(res.Attempts, Attempt{Connected: true, Took: time.Duration(us) * time.Microsecond})
		case f[0] == "REJECTED" && len(f) == 3:
			reason, _ := strconv.Atoi(f[1])
			us, _ := strconv.ParseInt(f[2], 10, 64)
			res.Attempts = append(res.Attempts, Attempt{Rejected: true, Reason: reason, Took: time.Duration(us) * time.Microsecond})
		case f[0] == "FAILED" && len(f) >= 2 && f[1] == "send:":
			res.Stderr += sc.Text() + "\n"
		case f[0] == "FAILED":
			res.Attempts = append(res.Attempts, Attempt{Failure: strings.TrimPrefix(sc.Text(), "FAILED ")})
		case f[0] == "SENT" && len(f) == 3:
			n, _ := strconv.Atoi(f[1])
			b, _ := strconv.ParseInt(f[2], 10, 64)
			res.SentPackets += n
			res.SentBytes += b
		}
	}
	return res
}

// ---- srt-live-transmit ----

// SLTOptions tune an srt-live-transmit peer.
type SLTOptions struct {
	Passphrase string
	// Latency is SRTO_LATENCY; 0 keeps libsrt's default (120 ms).
	Latency time.Duration
	// KMRefreshRate and KMPreAnnounce are SRTO_KMREFRESHRATE and
	// SRTO_KMPREANNOUNCE (packets); 0 keeps libsrt's defaults (a key
	// refresh every 2^24 packets).
	KMRefreshRate, KMPreAnnounce int
	// Host is the address a listener binds (default 127.0.0.1).
	Host string
	// Netns runs a listener in that network namespace (ip netns exec).
	Netns string
	// StatsFile has a caller write libsrt's statistics there, as JSON,
	// every StatsEvery (default 1 s).
	StatsFile  string
	StatsEvery time.Duration
}

// sltLifetime is srt-live-transmit's own exit timer: a safety net should
// the test binary die without running its cleanups.
const sltLifetime = "-t:60"

func sltURI(host string, port int, q url.Values) string {
	u := url.URL{Scheme: "srt", Host: net.JoinHostPort(host, strconv.Itoa(port))}
	// srt-live-transmit splits the query on & and = without unescaping:
	// values go in verbatim.
	var parts []string
	for _, k := range []string{"mode", "streamid", "passphrase", "latency", "kmrefreshrate", "kmpreannounce"} {
		if v := q.Get(k); v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return u.String() + "?" + strings.Join(parts, "&")
}

// SLTListener is srt-live-transmit as an SRT listener backend writing what
// it receives to standard output. Like every srt-live-transmit listener
// it accepts one caller and closes its listening socket; it exits when that
// caller disconnects.
type SLTListener struct {
	*Process
	Addr string
	out  peer.Buffer
}

// StartSLTListener starts srt-live-transmit listening on a free port of
// 127.0.0.1 and waits until it answers an SRT induction.
func StartSLTListener(t testing.TB, o SLTOptions) *SLTListener {
	t.Helper()
	bin := RequireTool(t, "srt-live-transmit")
	q := url.Values{"mode": {"listener"}}
	setSLTOptions(q, o)
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	for attempt := 1; ; attempt++ {
		port := FreeUDPPort(t)
		l := &SLTListener{Addr: net.JoinHostPort(host, strconv.Itoa(port))}
		args := []string{"-v", sltLifetime, "-a:no", sltURI(host, port, q), "file://con"}
		prog := bin
		if o.Netns != "" {
			prog, args = "ip", append([]string{"netns", "exec", o.Netns, bin}, args...)
		}
		l.Process = startProcess(t, false, &l.out, prog, args...)
		err := peer.WaitSRT(context.Background(), l.Addr, 5*time.Second, l.Exited)
		if err == nil {
			return l
		}
		// The port was free a moment ago; someone may have taken it since.
		if !l.Exited() || attempt == 3 {
			t.Fatalf("srt-live-transmit listener on %s: %v; stderr:\n%s", l.Addr, err, l.Stderr())
		}
	}
}

func setSLTOptions(q url.Values, o SLTOptions) {
	if o.Passphrase != "" {
		q.Set("passphrase", o.Passphrase)
	}
	if o.Latency > 0 {
		q.Set("latency", strconv.FormatInt(o.Latency.Milliseconds(), 10))
	}
	if o.KMRefreshRate > 0 {
		q.Set("kmrefreshrate", strconv.Itoa(o.KMRefreshRate))
		q.Set("kmpreannounce", strconv.Itoa(o.KMPreAnnounce))
	}
}

// Accepted reports whether the listener accepted a caller.
func (l *SLTListener) Accepted() bool {
	return strings.Contains(l.Stderr(), "Accepted SRT source connection")
}

// Received is what the listener wrote to standard output so far.
// srt-live-transmit buffers its output: the count is final only once the
// process has exited (see Finish).
func (l *SLTListener) Received() []byte { return l.out.Bytes() }

// Finish waits up to d for the listener to exit (it does when its caller
// disconnects), stops it if it did not, and returns everything it wrote.
func (l *SLTListener) Finish(d time.Duration) []byte {
	if exited, _ := l.Wait(d); !exited {
		l.Stop()
	}
	return l.out.Bytes()
}

// SLTCaller is srt-live-transmit as an SRT caller sending its standard
// input, which the test feeds.
type SLTCaller struct {
	*Process
}

// StartSLTCaller starts srt-live-transmit calling addr with streamID and
// waits up to 5 s for it to connect. It reports (not fails) a caller that
// did not connect: Connected tells.
func StartSLTCaller(t testing.TB, addr, streamID string, o SLTOptions) *SLTCaller {
	t.Helper()
	bin, target := sltCaller(t, addr, streamID, o)
	c := &SLTCaller{}
	// -chunk:1316 makes every read of standard input one SRT packet of at
	// most 1316 bytes (seven TS packets).
	args := []string{"-v", sltLifetime, "-a:no", "-chunk:1316"}
	if o.StatsFile != "" {
		every := o.StatsEvery
		if every <= 0 {
			every = time.Second
		}
		args = append(args, "-s:"+strconv.FormatInt(every.Milliseconds(), 10), "-pf:json", "-statsout:"+o.StatsFile)
	}
	c.Process = startProcess(t, true, io.Discard, bin, append(args, "file://con", target)...)
	c.waitStderr("SRT target connected", 5*time.Second)
	return c
}

// Connected reports whether srt-live-transmit said it connected.
func (c *SLTCaller) Connected() bool { return strings.Contains(c.Stderr(), "SRT target connected") }

// Feed writes data to the caller's standard input in chunks of chunk
// bytes, interval apart.
func (c *SLTCaller) Feed(data []byte, chunk int, interval time.Duration) error {
	for len(data) > 0 {
		n := min(chunk, len(data))
		if _, err := c.Stdin().Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
		if interval > 0 {
			time.Sleep(interval)
		}
	}
	return nil
}

// ---- ffmpeg ----

// FFmpegPublish runs ffmpeg publishing a generated MPEG-TS test stream
// (lavfi testsrc + sine, MPEG-2 video and MP2 audio, in real time) of the
// given length to addr with streamID, and waits for it to finish.
func FFmpegPublish(t testing.TB, addr, streamID string, length time.Duration) error {
	t.Helper()
	bin := RequireTool(t, "ffmpeg")
	// ffmpeg takes an srt:// URL's query verbatim (no unescaping, and a
	// value ends at '&'): the stream ID goes in as the protocol option
	// srt_streamid (plain -streamid is an ffmpeg option of its own).
	target := "srt://" + addr + "?pkt_size=1316"
	secs := strconv.FormatFloat(length.Seconds(), 'f', 3, 64)
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", secs, "-c:v", "mpeg2video", "-b:v", "800k", "-c:a", "mp2", "-b:a", "128k",
		"-f", "mpegts", "-srt_streamid", streamID, target}
	p := startProcess(t, false, io.Discard, bin, args...)
	limit := length + 10*time.Second
	exited, err := p.Wait(limit)
	if !exited {
		p.Stop()
		return fmt.Errorf("ffmpeg did not finish within %v; stderr:\n%s", limit, p.Stderr())
	}
	if err != nil {
		return fmt.Errorf("ffmpeg: %v; stderr:\n%s", err, p.Stderr())
	}
	return nil
}

// ---- probing ----

// WaitSRTListener sends SRT inductions to addr until one is answered (a
// listener answers an induction without keeping any state) or d passes.
func WaitSRTListener(addr string, d time.Duration) error {
	return peer.WaitSRT(context.Background(), addr, d, nil)
}

// SLTPlayer is srt-live-transmit as an SRT caller that plays a stream and
// sends every packet it receives as one UDP datagram to a sink, so a test
// sees each packet as it arrives (its standard output is buffered).
type SLTPlayer struct {
	*Process
}

// StartSLTPlayer starts srt-live-transmit calling addr with streamID and
// forwarding to sink (host:port). srt-live-transmit reports a source as
// connected only once data arrives: callers check the far end instead.
func StartSLTPlayer(t testing.TB, addr, streamID, sink string, o SLTOptions) *SLTPlayer {
	t.Helper()
	bin, source := sltCaller(t, addr, streamID, o)
	p := &SLTPlayer{}
	p.Process = startProcess(t, false, io.Discard, bin, "-v", sltLifetime, "-a:no", source, "udp://"+sink)
	return p
}

// sltCaller returns srt-live-transmit and the srt:// URI of a caller of
// addr with streamID.
func sltCaller(t testing.TB, addr, streamID string, o SLTOptions) (bin, uri string) {
	t.Helper()
	bin = RequireTool(t, "srt-live-transmit")
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	q := url.Values{"mode": {"caller"}, "streamid": {streamID}}
	setSLTOptions(q, o)
	return bin, sltURI(host, port, q)
}
