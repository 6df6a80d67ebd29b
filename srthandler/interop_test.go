package srthandler_test

// Interop tests with libsrt peers out of process: srt-live-transmit, ffmpeg
// and a small C caller (internal/testpeer/libsrt/srtcaller.c), all through
// an in-process Caddy. They skip when a tool is missing, and fail instead
// under SRT_INTEROP=required (CI).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

// interopPayload is n packets of 1316 bytes (seven TS packets) of
// pseudo-random data, the same for every run.
func interopPayload(packets int) []byte {
	r := rand.New(rand.NewPCG(1, uint64(packets)))
	b := make([]byte, packets*1316)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// interopProxyTo starts a proxy whose only route sends every caller to upstream.
func interopProxyTo(t *testing.T, upstream string) *testpeer.Proxy {
	t.Helper()
	return testpeer.StartProxy(t, map[string]any{
		"routes": []any{map[string]any{"to": to(upstream)}},
	}, testpeer.Options{})
}

// interopSecretBackend starts a gosrt backend that requires passphrase.
func interopSecretBackend(t *testing.T, passphrase string) *srtbackend.Server {
	t.Helper()
	b := &srtbackend.Server{Name: "secret", Passphrase: passphrase}
	if err := b.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// interopSettle is how long a sender waits after its last packet before it
// disconnects: a live-mode receiver holds packets for its latency (120 ms
// by default) and drops what it holds when the SHUTDOWN arrives.
const interopSettle = 600 * time.Millisecond

// interopSLTSend connects srt-live-transmit to addr, feeds it data and waits for
// delivered (when non-nil) to report all of it, or interopSettle otherwise; then
// it stops the caller.
func interopSLTSend(t *testing.T, addr, streamID string, o testpeer.SLTOptions, data []byte, delivered func() int) {
	t.Helper()
	c := testpeer.StartSLTCaller(t, addr, streamID, o)
	if !c.Connected() {
		t.Fatalf("srt-live-transmit did not connect to %s; stderr:\n%s", addr, c.Stderr())
	}
	if err := c.Feed(data, 1316, time.Millisecond); err != nil {
		t.Fatalf("feeding srt-live-transmit: %v", err)
	}
	if delivered != nil {
		waitFor(t, 10*time.Second, "the backend to receive every byte", func() bool { return delivered() >= len(data) })
	} else {
		time.Sleep(interopSettle)
	}
	// srt-live-transmit exits non-zero on SIGTERM: only a hang would matter,
	// and Stop kills that.
	_ = c.Stop()
}

// interopCheckListener stops an srt-live-transmit listener (it exits by itself
// once its caller left) and compares what it wrote with want.
func interopCheckListener(t *testing.T, l *testpeer.SLTListener, want []byte) {
	t.Helper()
	got := l.Finish(5 * time.Second)
	if !bytes.Equal(got, want) {
		t.Errorf("srt-live-transmit listener wrote %d bytes, want the %d sent (equal prefix: %d bytes)",
			len(got), len(want), interopCommonPrefix(got, want))
	}
}

func interopCommonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestInteropSLTPublish: srt-live-transmit publishes through the proxy to
// a gosrt backend and to an srt-live-transmit listener.
func TestInteropSLTPublish(t *testing.T) {
	data := interopPayload(300)

	t.Run("gosrt backend", func(t *testing.T) {
		b := startBackend(t, "gosrt")
		p := interopProxyTo(t, b.Addr())
		// Commas, equal signs, a space and non-ASCII: srt-live-transmit
		// passes the URI's value verbatim.
		const id = "#!::r=live/slt,m=publish,u=ünï cöde,x=a=b"
		interopSLTSend(t, p.Addr, id, testpeer.SLTOptions{}, data, func() int { return int(b.Published("live/slt")) })
		if got := streamIDs(b); !slices.Equal(got, []string{id}) {
			t.Errorf("backend saw stream IDs %q, want exactly [%q]", got, id)
		}
		if got := b.Published("live/slt"); got != uint64(len(data)) {
			t.Errorf("backend received %d bytes, want %d", got, len(data))
		}
	})

	t.Run("srt-live-transmit backend", func(t *testing.T) {
		l := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
		p := interopProxyTo(t, l.Addr)
		interopSLTSend(t, p.Addr, "#!::r=live/slt,m=publish", testpeer.SLTOptions{}, data, nil)
		interopCheckListener(t, l, data)
	})
}

// TestInteropFFmpegPublish: ffmpeg publishes a generated MPEG-TS stream
// through the proxy.
func TestInteropFFmpegPublish(t *testing.T) {
	testpeer.RequireTool(t, "ffmpeg")
	b := startBackend(t, "gosrt")
	p := interopProxyTo(t, b.Addr())
	const id = "#!::r=live/ffmpeg,m=publish"
	if err := testpeer.FFmpegPublish(t, p.Addr, id, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := streamIDs(b); !slices.Equal(got, []string{id}) {
		t.Errorf("backend saw stream IDs %q, want exactly [%q]", got, id)
	}
	// 2 s of 800 kb/s video and 128 kb/s audio is ~230 kB; the last
	// latency's worth may be lost when ffmpeg closes.
	got := b.Published("live/ffmpeg")
	t.Logf("backend received %d bytes of MPEG-TS", got)
	if got < 64<<10 || got%188 != 0 {
		t.Errorf("backend received %d bytes; want at least 64 KiB of whole 188-byte TS packets", got)
	}
}

// TestInteropEncrypted: the passphrase is known to the caller and the
// backend only; the proxy relays the key exchange and the encrypted data.
func TestInteropEncrypted(t *testing.T) {
	const secret = "only-the-ends-know-this"

	t.Run("libsrt caller to gosrt backend", func(t *testing.T) {
		b := interopSecretBackend(t, secret)
		p := interopProxyTo(t, b.Addr())
		r := testpeer.RunCaller(t, p.Addr, "#!::r=live/enc,m=publish", testpeer.CallerOptions{
			Passphrase: secret, SendPackets: 100, Interval: time.Millisecond,
		})
		if len(r.Attempts) != 1 || !r.Attempts[0].Connected {
			t.Fatalf("caller: %v; output:\n%s%s", r.Attempts, r.Output, r.Stderr)
		}
		waitFor(t, 5*time.Second, "the decrypted stream at the backend", func() bool {
			return b.Published("live/enc") == uint64(r.SentBytes)
		})
		if r.SentBytes != 100*1316 {
			t.Errorf("caller sent %d bytes, want %d", r.SentBytes, 100*1316)
		}
	})

	t.Run("srt-live-transmit to srt-live-transmit", func(t *testing.T) {
		data := interopPayload(200)
		l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Passphrase: secret})
		p := interopProxyTo(t, l.Addr)
		interopSLTSend(t, p.Addr, "#!::r=live/enc,m=publish", testpeer.SLTOptions{Passphrase: secret}, data, nil)
		interopCheckListener(t, l, data)
	})
}

// TestInteropWrongPassphrase: the backend's rejection reaches a libsrt
// caller unchanged: srt_getrejectreason() is SRT_REJ_BADSECRET.
func TestInteropWrongPassphrase(t *testing.T) {
	const badSecret = 10 // SRT_REJ_BADSECRET; 1010 on the wire
	check := func(t *testing.T, addr string) {
		t.Helper()
		r := testpeer.RunCaller(t, addr, "#!::r=live/enc,m=publish", testpeer.CallerOptions{Passphrase: "not-the-passphrase"})
		if len(r.Attempts) != 1 || !r.Attempts[0].Rejected || r.Attempts[0].Reason != badSecret {
			t.Fatalf("caller: %v, want rejected with reason %d (SRT_REJ_BADSECRET); output:\n%s%s", r.Attempts, badSecret, r.Output, r.Stderr)
		}
	}
	t.Run("gosrt backend", func(t *testing.T) {
		b := interopSecretBackend(t, "the-right-passphrase")
		check(t, interopProxyTo(t, b.Addr()).Addr)
		if n := len(b.Conns()); n != 0 {
			t.Errorf("backend accepted %d connections", n)
		}
	})
	t.Run("srt-live-transmit backend", func(t *testing.T) {
		l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Passphrase: "the-right-passphrase"})
		check(t, interopProxyTo(t, l.Addr).Addr)
		if l.Accepted() {
			t.Errorf("srt-live-transmit accepted the caller")
		}
	})
}

// interopDropFirstConclusionResponse makes r lose the first CONCLUSION handshake
// the backend sends (the handshake type at offset 36 is 0xFFFFFFFF).
func interopDropFirstConclusionResponse(r *testpeer.Relay) *atomic.Bool {
	dropped := new(atomic.Bool)
	r.SetDrop(func(toBackend bool, p []byte) bool {
		if toBackend || len(p) < 64 || binary.BigEndian.Uint16(p) != 0x8000 ||
			binary.BigEndian.Uint32(p[36:]) != 0xFFFFFFFF {
			return false
		}
		return dropped.CompareAndSwap(false, true)
	})
	return dropped
}

// TestInteropLostConclusionResponse: the backend's first conclusion
// response is lost between the proxy and the backend, and a gosrt backend
// never answers the repeated conclusion. The proxy must still connect the
// caller (by restarting the handshake under a substitute socket ID), and
// data must flow both for a gosrt caller (which never repeats its own
// handshake packets) and for a libsrt caller (which does, every 250 ms).
func TestInteropLostConclusionResponse(t *testing.T) {
	const id = "#!::r=live/lossy,m=publish"
	lossyProxy := func(t *testing.T, backend string) (*testpeer.Proxy, *atomic.Bool) {
		relay := testpeer.NewRelay(t, backend)
		dropped := interopDropFirstConclusionResponse(relay)
		return interopProxyTo(t, relay.Addr), dropped
	}

	t.Run("gosrt caller to gosrt backend", func(t *testing.T) {
		b := startBackend(t, "gosrt")
		p, dropped := lossyProxy(t, b.Addr())
		start := time.Now()
		conn, err := testpeer.Dial(p.Addr, id, testpeer.DialOptions{})
		if err != nil {
			t.Fatalf("gosrt caller: %v", err)
		}
		defer conn.Close()
		t.Logf("gosrt caller connected in %v", time.Since(start))
		data := interopPayload(100)
		for i := 0; i < len(data); i += 1316 {
			if _, err := conn.Write(data[i : i+1316]); err != nil {
				t.Fatalf("write: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
		sent := time.Now()
		waitFor(t, 5*time.Second, "the stream at the backend", func() bool { return b.Published("live/lossy") >= uint64(len(data)) })
		// gosrt delivers a packet when the time since it accepted the
		// connection reaches the packet's timestamp plus the latency: on a
		// restarted handshake that is the restart's delay late.
		t.Logf("last packet delivered %v after it was sent (latency 120 ms)", time.Since(sent))
		if !dropped.Load() {
			t.Errorf("the relay never saw a conclusion response to drop")
		}
		if got := b.Published("live/lossy"); got != uint64(len(data)) {
			t.Errorf("backend received %d bytes, want %d", got, len(data))
		}
	})

	t.Run("libsrt caller to gosrt backend", func(t *testing.T) {
		testpeer.SRTCallerPath(t)
		b := startBackend(t, "gosrt")
		p, dropped := lossyProxy(t, b.Addr())
		const packets = 100
		r := testpeer.RunCaller(t, p.Addr, id, testpeer.CallerOptions{
			SendPackets: packets, Interval: time.Millisecond,
			// See above: after a restarted handshake a gosrt backend
			// delivers late and drops what it holds when the caller leaves.
			Linger: 2 * time.Second,
		})
		if len(r.Attempts) != 1 || !r.Attempts[0].Connected {
			t.Fatalf("libsrt caller: %v; output:\n%s%s", r.Attempts, r.Output, r.Stderr)
		}
		t.Logf("libsrt caller connected in %v", r.Attempts[0].Took)
		if !dropped.Load() {
			t.Errorf("the relay never saw a conclusion response to drop")
		}
		want := uint64(packets * 1316)
		waitFor(t, 5*time.Second, "the stream at the backend", func() bool { return b.Published("live/lossy") >= want })
		if got := b.Published("live/lossy"); got != want || r.SentBytes != int64(want) {
			t.Errorf("caller sent %d bytes, backend received %d, want %d", r.SentBytes, got, want)
		}
	})

	// srt-live-transmit closes its listening socket as soon as it accepted
	// a caller. Once the response to that caller is lost, nothing on the
	// backend's port answers a repeated conclusion or a new handshake, and
	// nothing can: the accepted socket's ID was in the lost response. A
	// direct libsrt caller times out the same way. What the proxy owes the
	// caller then is a clear rejection within handshake_timeout.
	oneShot := func(t *testing.T, dial func(addr string) (reason uint32, took time.Duration, err error)) {
		l := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
		p, dropped := lossyProxy(t, l.Addr)
		reason, took, err := dial(p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if !dropped.Load() || !l.Accepted() {
			t.Errorf("the backend's acceptance was not lost as arranged (dropped %v, accepted %v)", dropped.Load(), l.Accepted())
		}
		if reason != 1503 || took > 2500*time.Millisecond {
			t.Errorf("caller rejected with reason %d after %v; want 1503 (down) within the 2 s handshake timeout", reason, took)
		}
	}
	t.Run("gosrt caller to srt-live-transmit backend", func(t *testing.T) {
		oneShot(t, func(addr string) (uint32, time.Duration, error) {
			start := time.Now()
			conn, err := testpeer.Dial(addr, id, testpeer.DialOptions{})
			took := time.Since(start)
			if err == nil {
				conn.Close()
				return 0, took, nil
			}
			reason, ok := testpeer.RejectReason(err)
			if !ok {
				return 0, took, fmt.Errorf("gosrt caller: %v, want a rejection", err)
			}
			return reason, took, nil
		})
	})
	t.Run("libsrt caller to srt-live-transmit backend", func(t *testing.T) {
		testpeer.SRTCallerPath(t)
		oneShot(t, func(addr string) (uint32, time.Duration, error) {
			r := testpeer.RunCaller(t, addr, id, testpeer.CallerOptions{})
			if len(r.Attempts) != 1 || r.Attempts[0].Failure != "" {
				return 0, 0, fmt.Errorf("libsrt caller: %v; output:\n%s%s", r.Attempts, r.Output, r.Stderr)
			}
			return uint32(r.Attempts[0].Reason), r.Attempts[0].Took, nil
		})
	})
	t.Run("libsrt caller directly to srt-live-transmit backend", func(t *testing.T) {
		// For the record: without the proxy, the same loss leaves a libsrt
		// caller to time out.
		testpeer.SRTCallerPath(t)
		l := testpeer.StartSLTListener(t, testpeer.SLTOptions{})
		relay := testpeer.NewRelay(t, l.Addr)
		interopDropFirstConclusionResponse(relay)
		r := testpeer.RunCaller(t, relay.Addr, id, testpeer.CallerOptions{Timeout: 1500 * time.Millisecond})
		if len(r.Attempts) != 1 {
			t.Fatalf("libsrt caller: %v; output:\n%s%s", r.Attempts, r.Output, r.Stderr)
		}
		t.Logf("direct libsrt caller: %v", r.Attempts[0])
	})
}

// TestInteropRouteRejections: a libsrt caller reads the proxy's own
// rejections through srt_getrejectreason().
func TestInteropRouteRejections(t *testing.T) {
	b := startBackend(t, "b")
	p := testpeer.StartProxy(t, map[string]any{
		"routes": []any{
			map[string]any{"user": []string{"mallory"}, "reject": "forbidden"},
			map[string]any{"resource": []string{"live/*"}, "to": to(b.Addr())},
		},
	}, testpeer.Options{})
	for _, c := range []struct {
		id   string
		want int
	}{
		{"#!::u=mallory,r=live/x", 1403}, // SRT_REJX_FORBIDDEN
		{"#!::r=nowhere/x", 1404},        // SRT_REJX_NOTFOUND: no route
	} {
		r := testpeer.RunCaller(t, p.Addr, c.id, testpeer.CallerOptions{})
		if len(r.Attempts) != 1 || !r.Attempts[0].Rejected || r.Attempts[0].Reason != c.want {
			t.Errorf("stream ID %q: %v, want rejected with reason %d; output:\n%s%s", c.id, r.Attempts, c.want, r.Output, r.Stderr)
		}
	}
	if n := len(b.Conns()); n != 0 {
		t.Errorf("backend saw %d connections from rejected callers", n)
	}
}

// TestConnectTimeReport logs how long a libsrt caller takes to connect
// directly to a backend and through the proxy. It reports; it does not
// judge (timing goals belong in benchmarks): it fails only on errors.
func TestConnectTimeReport(t *testing.T) {
	const repeat = 10
	b := startBackend(t, "b")
	p := interopProxyTo(t, b.Addr())
	direct := medianConnect(t, "direct", b.Addr(), "#!::r=live/timing", repeat)
	proxied := medianConnect(t, "through the proxy", p.Addr, "#!::r=live/timing", repeat)
	if direct > 0 {
		t.Logf("proxy/direct connect-time ratio: %.2f", float64(proxied)/float64(direct))
	}
}
