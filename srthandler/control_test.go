package srthandler_test

import (
	"bytes"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// controlPacket builds a control packet to dest with a subtype and body.
func controlPacket(typ wire.ControlType, subtype uint16, dest uint32, body ...uint32) []byte {
	p := wire.Header{Control: true, Type: typ, DestSocket: dest}.Append(nil)
	binary.BigEndian.PutUint16(p[2:4], subtype)
	for _, w := range body {
		p = binary.BigEndian.AppendUint32(p, w)
	}
	return p
}

// watchMalformed counts what passes a relay towards the backend that the
// guard would refuse, and the key material packets either way.
func watchMalformed(r *testpeer.Relay) (malformed, kmreq, kmrsp *atomic.Int64) {
	malformed, kmreq, kmrsp = new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)
	r.SetDrop(func(toBackend bool, p []byte) bool {
		if toBackend && wire.CheckControl(p) != nil {
			malformed.Add(1)
		}
		if wire.IsControl(p) && wire.ControlTypeOf(p) == wire.CtrlUser {
			switch binary.BigEndian.Uint16(p[2:4]) {
			case wire.UserKMREQ:
				kmreq.Add(1)
			case wire.UserKMRSP:
				kmrsp.Add(1)
			}
		}
		return false
	})
	return malformed, kmreq, kmrsp
}

// Malformed ACK, NAK, DROPREQ and key material packets in a live session,
// correctly addressed: dropped and counted, none reaches the origin, and
// the session lives on.
func TestMalformedControlDropped(t *testing.T) {
	for _, path := range dataPaths {
		t.Run(path, func(t *testing.T) {
			b := startBackend(t, "b")
			relay := testpeer.NewRelay(t, b.Addr())
			malformed, _, _ := watchMalformed(relay)
			p := testpeer.StartProxy(t, map[string]any{
				"data_path": path,
				"routes":    []any{map[string]any{"to": to(relay.Addr)}},
			}, testpeer.Options{Admin: true})
			c := testpeer.NewRawCaller(t, p.Addr, 0x1234)
			resp, err := wire.ParseHandshake(c.Handshake(5, "#!::r=live/x,m=publish", 2*time.Second))
			if err != nil || resp.Type != wire.HSConclusion {
				t.Fatalf("no conclusion response: %v", err)
			}
			up := resp.SocketID
			bad := [][]byte{
				controlPacket(wire.CtrlACK, 0, up),                                                      // no body
				controlPacket(wire.CtrlACK, 0, up, 0x80000000),                                          // sequence out of range
				controlPacket(wire.CtrlACK, 0, up, 1, 2),                                                // neither light nor full
				controlPacket(wire.CtrlNAK, 0, up, 0x80000010),                                          // range without its end
				controlPacket(wire.CtrlNAK, 0, up, 0x80000010, 5),                                       // range backwards
				controlPacket(wire.CtrlDropReq, 0, up, 7),                                               // one sequence number
				controlPacket(wire.CtrlDropReq, 0, up, 9, 1),                                            // range backwards
				controlPacket(wire.CtrlUser, wire.UserKMREQ, up, 0x12202901, 0, 0x02000200, 0x000004ff), // key length lies
				controlPacket(wire.CtrlUser, wire.UserKMRSP, up, 0x12202901, 0, 0x02000200),             // truncated
				controlPacket(wire.CtrlUser, wire.UserKMRSP, up, 9),                                     // no such KM state
				controlPacket(wire.CtrlUser, wire.UserHSRSP, up),                                        // HSv4 HSRSP without a body
			}
			before := session.DroppedControl()[session.DropMalformed]
			for range 3 {
				for _, pkt := range bad {
					c.Send(pkt)
				}
				c.Send(controlPacket(wire.CtrlKeepalive, 0, up))
			}
			want := uint64(3 * len(bad))
			waitFor(t, 2*time.Second, "the malformed packets to be dropped", func() bool {
				return session.DroppedControl()[session.DropMalformed]-before >= want
			})
			if d := session.DroppedControl()[session.DropMalformed] - before; d != want {
				t.Errorf("dropped %d malformed control packets, want %d", d, want)
			}
			if m := metric(t, p, "caddy_layer4_srt_dropped_control_total", `reason="malformed"`); m < float64(want) {
				t.Errorf("dropped_control_total{reason=malformed} = %v, want at least %d", m, want)
			}
			if n := malformed.Load(); n != 0 {
				t.Errorf("%d malformed control packets reached the origin", n)
			}
			caller, _ := session.KeyOf(c.Conn.RemoteAddr(), c.Conn.LocalAddr())
			if session.Default.Lookup(caller) == nil {
				t.Errorf("the caller's session ended")
			}
			// A SHUTDOWN to the session's socket still ends it.
			c.Send(wire.AppendShutdown(nil, up, 1))
			waitFor(t, 2*time.Second, "the caller's SHUTDOWN to end its session", func() bool { return session.Default.Lookup(caller) == nil })
		})
	}
}

// A libsrt encrypted stream whose keys are refreshed several times on the
// way: every KMREQ/KMRSP passes and every byte arrives.
func TestInteropKeyRefreshes(t *testing.T) {
	const secret = "only-the-ends-know-this"
	data := interopPayload(3000)
	l := testpeer.StartSLTListener(t, testpeer.SLTOptions{Passphrase: secret})
	relay := testpeer.NewRelay(t, l.Addr)
	malformed, kmreq, kmrsp := watchMalformed(relay)
	p := interopProxyTo(t, relay.Addr)
	before := session.DroppedControl()[session.DropMalformed]
	interopSLTSend(t, p.Addr, "#!::r=live/enc,m=publish", testpeer.SLTOptions{
		Passphrase: secret, KMRefreshRate: 500, KMPreAnnounce: 100,
	}, data, nil)
	got := l.Finish(5 * time.Second)
	if !bytes.Equal(got, data) {
		t.Errorf("listener wrote %d bytes, want the %d sent (equal prefix: %d bytes)", len(got), len(data), interopCommonPrefix(got, data))
	}
	if kmreq.Load() < 3 || kmrsp.Load() < 3 {
		t.Errorf("the origin saw %d KMREQ and answered %d KMRSP; want several refreshes", kmreq.Load(), kmrsp.Load())
	}
	if d := session.DroppedControl()[session.DropMalformed] - before; d != 0 || malformed.Load() != 0 {
		t.Errorf("the guard dropped %d control packets of a real encrypted stream (%d malformed passed)", d, malformed.Load())
	}
	t.Logf("KMREQ %d, KMRSP %d", kmreq.Load(), kmrsp.Load())
}
