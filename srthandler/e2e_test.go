package srthandler_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/testpeer"
)

func TestPublishThenPlay(t *testing.T) {
	for _, path := range dataPaths {
		t.Run(path, func(t *testing.T) { testPublishThenPlay(t, path) })
	}
}

func testPublishThenPlay(t *testing.T, dataPath string) {
	b1 := startBackend(t, "b1")
	b2 := startBackend(t, "b2")
	p := testpeer.StartProxy(t, map[string]any{
		"data_path": dataPath,
		"routes":    []any{map[string]any{"to": to(b1.Addr(), b2.Addr())}},
	}, testpeer.Options{})

	pub, err := testpeer.Dial(p.Addr, "#!::r=live/show,m=publish", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	play, err := testpeer.Dial(p.Addr, "#!::r=live/show,m=request", testpeer.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer play.Close()

	// stream_hash must have put both on the same backend (which records a
	// connection just after answering it).
	waitFor(t, 2*time.Second, "both connections at the backends", func() bool {
		return len(b1.Conns())+len(b2.Conns()) == 2
	})
	if n1, n2 := len(b1.Conns()), len(b2.Conns()); !(n1 == 2 && n2 == 0 || n1 == 0 && n2 == 2) {
		t.Fatalf("publisher and player split across backends: %d and %d connections", n1, n2)
	}

	got := make(chan []byte, 100)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := play.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	var sent [][]byte
	for i := range 20 {
		msg := bytes.Repeat([]byte{byte(i)}, 188*7)
		sent = append(sent, msg)
		if _, err := pub.Write(msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var recv [][]byte
	timeout := time.After(5 * time.Second)
	for len(recv) < len(sent) {
		select {
		case m, ok := <-got:
			if !ok {
				t.Fatalf("player closed after %d messages", len(recv))
			}
			recv = append(recv, m)
		case <-timeout:
			t.Fatalf("player got %d of %d messages", len(recv), len(sent))
		}
	}
	for i := range sent {
		if !bytes.Equal(sent[i], recv[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
}
