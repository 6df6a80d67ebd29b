// Command srt-backend runs a small SRT publish/play origin (gosrt): callers
// with m=publish feed a resource, other callers of it play it. It serves
// what it has seen as JSON on -stats, for the demo and for local testing
// of the proxy.
//
//	srt-backend -name origin-a -listen 127.0.0.1:10001 -stats 127.0.0.1:10011
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/srtbackend"
)

func main() {
	name := flag.String("name", "origin", "name in reports")
	listen := flag.String("listen", "127.0.0.1:10001", "SRT listen address")
	stats := flag.String("stats", "", "HTTP address serving GET /stats (empty: off)")
	pass := flag.String("passphrase", "", "require this passphrase")
	flag.Parse()

	s := &srtbackend.Server{Name: *name, Passphrase: *pass}
	if err := s.Listen(*listen); err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: SRT on %s", *name, s.Addr())
	var srv *http.Server
	if *stats != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s.Snapshot())
		})
		srv = &http.Server{Addr: *stats, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	s.Close()
}
