package srthandler

import (
	"net"
	"testing"
	"time"

	"github.com/mholt/caddy-l4/layer4"
	"github.com/srtroute/caddy-l4-srt/internal/cookie"
	"github.com/srtroute/caddy-l4-srt/internal/handshake"
	"github.com/srtroute/caddy-l4-srt/internal/session"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
	"go.uber.org/zap"
)

// A handshake datagram that a new session socket caught before it was
// connected is answered as the listener would have answered it, from the
// listener's address.
func TestServeStray(t *testing.T) {
	listener, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	caller, err := net.DialUDP("udp", nil, listener.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	h := &Handler{logger: zap.NewNop(), gate: &handshake.Gate{Jar: cookie.NewJar()}, registry: session.NewRegistry()}
	ind := wire.AppendInduction(nil, 77, 1, 1500, 8192, [16]byte{}, 0)
	from := caller.LocalAddr().(*net.UDPAddr).AddrPort()
	h.serveStray(layer4.WrapConnection(listener, nil, zap.NewNop()), session.Stray{From: from, Data: ind})
	caller.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	n, err := caller.Read(buf)
	if err != nil {
		t.Fatalf("no answer to the stray induction: %v", err)
	}
	hs, err := wire.ParseHandshake(buf[:n])
	if err != nil || hs.Type != wire.HSInduction || hs.Header.DestSocket != 77 || hs.Cookie == 0 {
		t.Fatalf("answer %+v, %v", hs, err)
	}
}
