package srthandler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/fleet"
)

// Dynamic upstream defaults.
const (
	// DefaultDynamicRefresh is Caddy's reverse_proxy default for DNS
	// sources.
	DefaultDynamicRefresh = time.Minute
	// srsRecheck is how often a `dynamic srs` pool looks for expired
	// origins; registrations wake it at once.
	srsRecheck = time.Second
	// maxDNSUpstreams bounds what one answer may put in a pool.
	maxDNSUpstreams = 256
	// maxLookupTime bounds one DNS lookup, whatever the refresh.
	maxLookupTime = 5 * time.Second
)

// DynamicUpstreams is a route's source of upstreams that change without a
// config reload. Caddyfile:
//
//	dynamic a <name> <port> {      # every A/AAAA record of name, this port
//		refresh   <duration>       # default 1m
//		resolvers <host[:port]...> # default: the system's
//	}
//	dynamic srv <name> { ... }     # SRV records: host and port from each
//	dynamic srs                    # SRS origins that sent heartbeats
type DynamicUpstreams struct {
	// Source is "a", "srv" or "srs".
	Source string `json:"source"`
	// Name is the DNS name to look up (a, srv).
	Name string `json:"name,omitempty"`
	// Port is the port of every upstream of an "a" source.
	Port string `json:"port,omitempty"`
	// Refresh is how often DNS is asked again. Default 1m.
	Refresh caddy.Duration `json:"refresh,omitempty"`
	// Resolvers are DNS servers to ask instead of the system's.
	Resolvers []string `json:"resolvers,omitempty"`
}

func (d *DynamicUpstreams) validate() error {
	switch d.Source {
	case "a":
		if d.Name == "" {
			return errors.New("dynamic a: needs a name")
		}
		if p, err := strconv.ParseUint(d.Port, 10, 16); err != nil || p == 0 {
			return fmt.Errorf("dynamic a %s: port %q: want 1-65535", d.Name, d.Port)
		}
	case "srv":
		if d.Name == "" {
			return errors.New("dynamic srv: needs a name")
		}
		if d.Port != "" {
			return errors.New("dynamic srv: the records give the port")
		}
	case "srs":
		if d.Name != "" || d.Port != "" || d.Refresh != 0 || len(d.Resolvers) > 0 {
			return errors.New("dynamic srs: takes no options (origins come from srs_heartbeat)")
		}
	default:
		return fmt.Errorf("dynamic %q: want a, srv or srs", d.Source)
	}
	if d.Refresh < 0 {
		return errors.New("dynamic: refresh must not be negative")
	}
	for _, r := range d.Resolvers {
		if _, err := resolverAddr(r); err != nil {
			return err
		}
	}
	return nil
}

// key names the source across configurations: a reload that keeps it
// starts from the set the old configuration last saw.
func (d *DynamicUpstreams) key() string {
	return strings.Join([]string{d.Source, d.Name, d.Port, strings.Join(d.Resolvers, ",")}, "|")
}

// lastSets remembers each source's last good set across reloads, so that
// a new configuration serves callers before its first answer.
var lastSets sync.Map // key → []string

// dynamicLookups counts DNS lookups of dynamic sources, by source (a,
// srv), name and result: ok, none (NXDOMAIN or no records: an empty
// pool), error (the last good set kept). Names come from the config:
// bounded. SRS sources read the heartbeat registry, which cannot fail.
var dynamicLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: metricsNS, Subsystem: metricsSub, Name: "dynamic_lookups_total",
	Help: "DNS lookups of dynamic upstream sources, by source (a, srv), name and result (ok, none, error: the last good set is kept).",
}, []string{"source", "name", "result"})

// errNoAnswerYet: a dynamic source that never answered has no upstreams.
var errNoAnswerYet = fmt.Errorf("%w: dynamic upstreams have had no answer yet", errNoHealthy)

// dynamicPool is the live set of one route's dynamic source. A goroutine
// of its own keeps it current, so that no caller waits on DNS.
type dynamicPool struct {
	cfg    *DynamicUpstreams
	source upstreamSource
	allow  []netip.Prefix // srs: origins outside are not served
	set    atomic.Pointer[[]string]
	probe  *probeConfig // active checks for members, when on
	log    *zap.Logger

	// members are the claims (and health watches) the pool holds on the
	// upstreams in set; only the refresh goroutine touches them.
	members map[string]func()
	failing bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func newDynamicPool(cfg *DynamicUpstreams, allow []netip.Prefix, probe *probeConfig, log *zap.Logger) *dynamicPool {
	p := &dynamicPool{cfg: cfg, source: sourceDNS, allow: allow, probe: probe, members: map[string]func(){},
		log: log.With(zap.String("dynamic", cfg.Source), zap.String("name", cfg.Name))}
	if cfg.Source == "srs" {
		p.source = sourceSRS
	}
	return p
}

// current is the set callers are placed from; nil before the first answer.
func (p *dynamicPool) current() []string {
	if s := p.set.Load(); s != nil {
		return *s
	}
	return nil
}

// start begins keeping the set current; the returned function stops it
// and gives back every claim it holds.
func (p *dynamicPool) start() (stop func()) {
	if last, ok := lastSets.Load(p.cfg.key()); ok {
		p.apply(last.([]string))
	}
	var release func()
	if p.source == sourceSRS {
		release = fleet.SRS.Serve(p.allow)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.run(ctx)
	return func() {
		cancel()
		<-p.done
		for addr, rel := range p.members {
			rel()
			delete(p.members, addr)
		}
		if release != nil {
			release()
		}
	}
}

func (p *dynamicPool) run(ctx context.Context) {
	defer close(p.done)
	for {
		var wake <-chan struct{}
		wait := time.Duration(p.cfg.Refresh)
		if p.source == sourceSRS {
			wake, wait = fleet.SRS.Changed(), srsRecheck
		} else if wait <= 0 {
			wait = DefaultDynamicRefresh
		}
		addrs, err := p.lookup(ctx)
		if ctx.Err() != nil {
			return
		}
		p.update(addrs, err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// update takes a lookup's answer. A failed lookup keeps the last good set.
func (p *dynamicPool) update(addrs []string, err error) {
	if p.source == sourceDNS {
		result := "ok"
		switch {
		case err != nil:
			result = "error"
		case len(addrs) == 0:
			result = "none"
		}
		dynamicLookups.WithLabelValues(p.cfg.Source, p.cfg.Name, result).Inc()
	}
	if err != nil {
		if !p.failing {
			p.failing = true
			p.log.Warn("dynamic upstreams: lookup failed; keeping the last good set",
				zap.Strings("upstreams", p.current()), zap.Error(err))
		}
		return
	}
	if p.failing {
		p.failing = false
		p.log.Info("dynamic upstreams: lookups answer again")
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if old := p.set.Load(); old != nil && slices.Equal(*old, addrs) {
		return
	}
	p.log.Info("dynamic upstreams changed", zap.Strings("upstreams", addrs), zap.Strings("before", p.current()))
	lastSets.Store(p.cfg.key(), addrs)
	p.apply(addrs)
}

// apply makes addrs the set, claiming new members (and watching their
// health) and letting go of those that left. A member that left drains:
// its live sessions go on, new callers go elsewhere.
func (p *dynamicPool) apply(addrs []string) {
	for _, a := range addrs {
		if _, ok := p.members[a]; ok {
			continue
		}
		st := stateOf(a)
		releases := []func(){st.claim(p.source)}
		if p.probe != nil {
			releases = append(releases, st.watch(*p.probe, p.log))
		}
		p.members[a] = func() {
			for _, r := range releases {
				r()
			}
		}
	}
	for a, rel := range p.members {
		if !slices.Contains(addrs, a) {
			rel()
			delete(p.members, a)
		}
	}
	s := slices.Clone(addrs)
	p.set.Store(&s)
}

func (p *dynamicPool) lookup(ctx context.Context) ([]string, error) {
	switch p.cfg.Source {
	case "srs":
		return p.srsOrigins(time.Now()), nil
	case "srv":
		return p.lookupSRV(ctx)
	}
	return p.lookupA(ctx)
}

func (p *dynamicPool) srsOrigins(now time.Time) []string {
	var out []string
	for _, o := range fleet.SRS.Live(now) {
		for _, ap := range o.SRT {
			if fleet.Within(p.allow, ap.Addr()) {
				out = append(out, ap.String())
			}
		}
	}
	return out
}

func (p *dynamicPool) lookupA(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.lookupTime())
	defer cancel()
	ips, err := p.resolver().LookupNetIP(ctx, "ip", p.cfg.Name)
	if isNotFound(err) {
		return []string{}, nil // an answer: there are none
	}
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", p.cfg.Name, err)
	}
	out := make([]string, 0, min(len(ips), maxDNSUpstreams))
	for _, ip := range ips[:min(len(ips), maxDNSUpstreams)] {
		out = append(out, net.JoinHostPort(ip.Unmap().String(), p.cfg.Port))
	}
	return out, nil
}

// lookupSRV resolves the SRV records and then each target, so that the
// set holds addresses: a caller's handshake never waits on DNS.
func (p *dynamicPool) lookupSRV(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.lookupTime())
	defer cancel()
	r := p.resolver()
	_, srvs, err := r.LookupSRV(ctx, "", "", p.cfg.Name)
	if isNotFound(err) {
		return []string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up SRV %s: %w", p.cfg.Name, err)
	}
	var out []string
	for _, srv := range srvs {
		if len(out) >= maxDNSUpstreams {
			break
		}
		port := strconv.Itoa(int(srv.Port))
		if ip, err := netip.ParseAddr(srv.Target); err == nil {
			out = append(out, net.JoinHostPort(ip.Unmap().String(), port))
			continue
		}
		ips, err := r.LookupNetIP(ctx, "ip", srv.Target)
		if err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("looking up %s (SRV target of %s): %w", srv.Target, p.cfg.Name, err)
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip.Unmap().String(), port))
		}
	}
	return out, nil
}

func (p *dynamicPool) lookupTime() time.Duration {
	if r := time.Duration(p.cfg.Refresh); r > 0 && r < maxLookupTime {
		return r
	}
	return maxLookupTime
}

// resolver asks the configured resolvers in turn, or the system's.
func (p *dynamicPool) resolver() *net.Resolver {
	if len(p.cfg.Resolvers) == 0 {
		return net.DefaultResolver
	}
	var next atomic.Uint32
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			addr, _ := resolverAddr(p.cfg.Resolvers[int(next.Add(1)-1)%len(p.cfg.Resolvers)])
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

// resolverAddr reads "host", "host:port" or "udp/host:port" as a DNS
// server address, port 53 by default.
func resolverAddr(s string) (string, error) {
	na, err := caddy.ParseNetworkAddressWithDefaults(s, "udp", 53)
	if err != nil || na.Host == "" || na.PortRangeSize() != 1 {
		return "", fmt.Errorf("resolver %q: want host[:port]", s)
	}
	return net.JoinHostPort(na.Host, strconv.Itoa(int(na.StartPort))), nil
}

// isNotFound tells "the name has no such records", an answer, from a
// failure to get one.
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// startUpstreams claims every route's static upstreams (and has them
// checked, when active checks are on) and starts its dynamic source.
func (h *Handler) startUpstreams() (releases []func()) {
	probe := h.HealthOptions.probeConfig()
	watched := map[string]bool{}
	for _, r := range h.Routes {
		for _, u := range r.upstreams {
			if u.addr == "" {
				continue
			}
			st := stateOf(u.addr)
			releases = append(releases, st.claim(sourceStatic))
			if probe != nil && !watched[u.addr] {
				watched[u.addr] = true
				releases = append(releases, st.watch(*probe, h.logger))
			}
		}
		if r.Dynamic != nil {
			r.pool = newDynamicPool(r.Dynamic, r.allow, probe, h.logger)
			releases = append(releases, r.pool.start())
		}
	}
	return releases
}
