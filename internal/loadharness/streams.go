package loadharness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/srtroute/caddy-l4-srt/internal/peer"
)

// StreamLoad is N publishers at a constant rate for a while.
type StreamLoad struct {
	Kind     PeerKind
	Streams  int
	Mbps     float64 // per stream
	Duration time.Duration
	// Profile names a CPU profile of the proxy to take while the
	// traffic flows ("" for none).
	Profile string
}

func (l StreamLoad) String() string {
	return fmt.Sprintf("%d × %s publisher at %g Mbit/s for %v", l.Streams, l.Kind, l.Mbps, l.Duration)
}

// StreamResult is what one path did with a StreamLoad.
type StreamResult struct {
	Path              Path
	Streams           int
	Connected         int
	ConnectErrors     map[string]int
	Sent, SentBytes   uint64 // by the application, summed over streams
	Delivery                 // at the origin's application, summed
	Sender            SenderStats
	ProxyCPU          time.Duration // while the traffic flowed
	ProxyRSS, PeakRSS int64
	UDPDrops          int64         // receive-buffer drops in the whole machine meanwhile
	Relay             RelayCounters // the plugin's relay meanwhile (zero on other paths)
	MachineIdle       float64       // percent of the machine's CPU left idle meanwhile
}

// GB is the payload relayed, in 10⁹ bytes.
func (r *StreamResult) GB() float64 { return float64(r.SentBytes) / 1e9 }

// RunStreams connects l.Streams publishers through path to a fresh
// origin, sends for l.Duration, waits for the origin to deliver, and
// collects the counters. The proxy's CPU is read from the first packet
// to the last delivery.
func (e *Env) RunStreams(ctx context.Context, path Path, l StreamLoad) (*StreamResult, error) {
	origin, t, stop, err := viaOrigin(ctx, e, path, StartOrigin)
	if err != nil {
		return nil, err
	}
	defer stop()
	pps := PacketsPerSecond(l.Mbps * 1e6)
	ps := e.connectPublishers(t.Addr, l.Kind, l.Streams, pps, l.Duration+time.Minute)
	defer ps.close()
	if len(ps.pubs) == 0 {
		return nil, fmt.Errorf("no publisher connected: %v", ps.failed)
	}
	res := &StreamResult{Path: path, Streams: l.Streams, Connected: len(ps.pubs), ConnectErrors: ps.failed}

	before, err := t.Usage()
	if err != nil {
		return nil, err
	}
	relayBefore, err := t.relayCounters(ctx)
	if err != nil {
		return nil, err
	}
	drops, machine := peer.UDPDrops(), ReadMachineCPU()
	profiled := e.profile(ctx, t, l)
	sent, err := sendAll(ctx, ps, pps, l.Duration)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	awaitDelivery(ctx, origin, ps.ids, sent)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	after, err := t.Usage()
	if err != nil {
		return nil, err
	}
	res.ProxyCPU, res.ProxyRSS, res.PeakRSS = after.CPU-before.CPU, after.RSS, after.HWM
	relayAfter, err := t.relayCounters(ctx)
	if err != nil {
		return nil, err
	}
	res.Relay = relayAfter.Sub(relayBefore)
	res.UDPDrops = peer.UDPDrops() - drops
	res.MachineIdle = ReadMachineCPU().IdlePercentSince(machine)
	if err := <-profiled; err != nil {
		return nil, fmt.Errorf("%s: profiling: %w", path, err)
	}
	for i, p := range ps.pubs {
		s, err := p.SenderStats()
		if err != nil {
			return nil, err
		}
		res.Sent += sent[i]
		res.Sender.Packets += s.Packets
		res.Sender.Retrans += s.Retrans
		res.Sender.SendDrops += s.SendDrops
		res.Delivery.add(origin.Delivery(ps.ids[i]))
	}
	res.SentBytes = res.Sent * PayloadSize
	return res, nil
}

// profile takes a CPU profile of the proxy for most of the traffic phase
// when l asks for one; the channel gets its outcome.
func (e *Env) profile(ctx context.Context, t *Target, l StreamLoad) <-chan error {
	done := make(chan error, 1)
	if l.Profile == "" || t.Proxy == nil || e.ProfileDir == "" {
		done <- nil
		return done
	}
	file := filepath.Join(e.ProfileDir, l.Profile+"-"+string(t.Path)+".pprof")
	go func() { done <- t.Proxy.CPUProfile(ctx, l.Duration-time.Second, file) }()
	return done
}

// sendAll paces every publisher at pps for d, each from a random phase
// so that the streams do not send in lockstep, and returns how many
// packets each sent.
func sendAll(ctx context.Context, ps *publishers, pps float64, d time.Duration) ([]uint64, error) {
	sent := make([]uint64, len(ps.pubs))
	errs := make([]error, len(ps.pubs))
	var wg sync.WaitGroup
	for i, p := range ps.pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			offset := time.Duration(rand.Float64() * float64(time.Second) / pps)
			sent[i], errs[i] = Pace(ctx, pps, d, offset, p.Send)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("sending on %s: %w", ps.ids[i], err)
		}
	}
	return sent, nil
}

// awaitDelivery waits until the origin has every packet that was sent, or
// until nothing more has arrived for a while (SRT delivers after its
// latency, 120 ms, plus retransmissions).
func awaitDelivery(ctx context.Context, o *Origin, ids []string, sent []uint64) {
	const settle = 2 * time.Second
	var last uint64
	lastChange := time.Now()
	for ctx.Err() == nil {
		var got, want uint64
		for i, id := range ids {
			got += o.Delivery(id).Packets
			want += sent[i]
		}
		if got >= want {
			return
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > settle {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
