package peer_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
)

func TestWaitSRT(t *testing.T) {
	s := &srtbackend.Server{Name: "probe"}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := peer.WaitSRT(context.Background(), s.Addr(), 2*time.Second, nil); err != nil {
		t.Fatalf("a gosrt listener: %v", err)
	}
	if len(s.Conns()) != 0 {
		t.Fatal("the probe left a connection behind")
	}

	port, err := peer.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	nothing := "127.0.0.1:" + strconv.Itoa(port)
	if err := peer.WaitSRT(context.Background(), nothing, 300*time.Millisecond, nil); err == nil {
		t.Fatal("a port nothing listens on answered")
	}
	start := time.Now()
	if err := peer.WaitSRT(context.Background(), nothing, 5*time.Second, func() bool { return true }); err == nil || time.Since(start) > time.Second {
		t.Fatalf("gave up: %v after %v", err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := peer.WaitSRT(ctx, nothing, 5*time.Second, nil); err != context.Canceled {
		t.Fatalf("cancelled: %v", err)
	}
}
