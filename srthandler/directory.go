package srthandler

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/srtroute/caddy-l4-srt/internal/directory"
	"github.com/srtroute/caddy-l4-srt/internal/streamid"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// Directory defaults.
const (
	DefaultDirectoryTTL    = 30 * time.Second
	DefaultDirectoryPrefix = "caddy-l4-srt:"
	// directoryTimeout bounds each call to a shared store: a slow or lost
	// Redis costs a caller's handshake this much at most, and the caller
	// is then placed from this instance's own sessions.
	directoryTimeout = 200 * time.Millisecond
)

// DirectoryConfig chooses where the stream directory is shared. Without
// it, the directory is this process's memory.
type DirectoryConfig struct {
	// Redis shares the directory with every proxy using the same server.
	Redis *RedisDirectory `json:"redis,omitempty"`
}

// RedisDirectory is a Redis server the directory is shared through.
type RedisDirectory struct {
	// Address is host:port.
	Address  string `json:"address"`
	Password string `json:"password,omitempty"`
	DB       int    `json:"db,omitempty"`
	// KeyPrefix begins every key the directory writes; default "caddy-l4-srt:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// TTL is how long an entry outlives its last refresh (each TTL/3), so
	// how long a crashed instance's streams stay listed. Default 30s.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// Placements: who chose a caller's upstream ({l4.srt.placement}).
const (
	placedByDirectory = "directory"
	placedByPolicy    = "policy"
	placedByAuth      = "auth" // the auth http callback named the upstream
)

var (
	directoryLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNS, Subsystem: metricsSub, Name: "directory_lookups_total",
		Help: "Callers placed by the stream directory (hit: a live publisher's upstream) or by the route's policy (miss).",
	}, []string{"result"})
	directoryErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNS, Subsystem: metricsSub, Name: "directory_store_errors_total",
		Help: "Failed or timed-out calls to the shared directory store (Redis).",
	})
	directoryConflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNS, Subsystem: metricsSub, Name: "directory_conflicts_total",
		Help: "Publishers refused with conflict (1409) by publisher_conflict reject.",
	})
)

var errConflict = errors.New("the stream already has a live publisher (publisher_conflict reject)")

// provisionDirectory connects the handler to the process's directory and,
// when configured, to the shared store.
func (h *Handler) provisionDirectory(log *zap.Logger) {
	if h.Directory == nil || h.Directory.Redis == nil {
		return
	}
	r := h.Directory.Redis
	defaultTo(&r.TTL, caddy.Duration(DefaultDirectoryTTL))
	if r.KeyPrefix == "" {
		r.KeyPrefix = DefaultDirectoryPrefix
	}
	m, release := directory.AcquireRedis(directory.RedisOptions{
		Addr: r.Address, Password: r.Password, DB: r.DB, Prefix: r.KeyPrefix,
		TTL: time.Duration(r.TTL), Timeout: directoryTimeout,
	}, log.Named("directory"), directoryErrors.Inc)
	h.mirror = m
	h.releases = append(h.releases, release)
}

func (h *Handler) validateDirectory() error {
	switch h.PublisherConflict {
	case "", "follow", "reject":
	default:
		return fmt.Errorf("srt: publisher_conflict %q: want follow or reject", h.PublisherConflict)
	}
	if h.Directory != nil && h.Directory.Redis != nil {
		r := h.Directory.Redis
		if r.Address == "" {
			return errors.New("srt: directory redis needs an address")
		}
		if r.TTL < 0 || (r.TTL > 0 && time.Duration(r.TTL) < 300*time.Millisecond) {
			return fmt.Errorf("srt: directory ttl %v: want at least 300ms", time.Duration(r.TTL))
		}
		if r.DB < 0 {
			return errors.New("srt: directory db must not be negative")
		}
	}
	return nil
}

// placement is what the directory knows of one caller, from its pick to
// the end of its session.
type placement struct {
	how   string
	pub   *directory.Publisher // a publisher's entry, until its session ends
	taken bool                 // a session owns pub now
}

// place orders the upstreams for a caller: the upstream of its stream's
// live publisher first, when there is one and it is healthy (in the
// route's list or not: an origin removed from the configuration serves
// its live streams to the end, draining), then the route's policy's
// order. A publisher is entered in the directory here, before its
// handshake, so that with publisher_conflict reject a second one is
// refused at once. An upstream the auth callback named (authPlaced) wins
// over the directory and the policy.
func (h *Handler) place(r *Route, info *streamid.Info, repl *caddy.Replacer, now time.Time, authPlaced []*upstreamState) ([]*upstreamState, *placement, error) {
	key := directory.Key{Host: info.Host, Resource: info.Resource}
	pl := &placement{how: placedByPolicy}
	if info.Mode == streamid.ModePublish || info.Mode == streamid.ModeBidirectional {
		exclusive := h.PublisherConflict == "reject"
		pub, ok := directory.Process().Publish(key, exclusive)
		if ok && exclusive && h.mirror != nil {
			if claimed, err := h.mirror.Claim(directory.Entry{Key: key, Instance: directory.Instance, Publishers: 1}); err == nil && !claimed {
				pub.End()
				ok = false
			}
		}
		if !ok {
			directoryConflicts.Inc()
			return nil, nil, errConflict
		}
		pl.pub = pub
	}
	if authPlaced != nil {
		pl.how = placedByAuth
		repl.Set("l4.srt.placement", pl.how)
		return authPlaced, pl, nil
	}
	pool, err := pick(r, info, repl, now)
	if followed := h.follow(key, now); followed != nil && !h.servedElsewhere(r, followed.addr, repl) {
		if err == nil {
			pool[0].release()
		}
		rest := make([]*upstreamState, 0, len(pool)+1)
		rest = append(rest, followed)
		for _, u := range pool {
			if u != followed {
				rest = append(rest, u)
			}
		}
		followed.acquire()
		pool, err, pl.how = rest, nil, placedByDirectory
		directoryLookups.WithLabelValues("hit").Inc()
	} else {
		directoryLookups.WithLabelValues("miss").Inc()
	}
	repl.Set("l4.srt.placement", pl.how)
	if err != nil {
		pl.abandon()
		return nil, nil, err
	}
	return pool, pl, nil
}

// servedElsewhere reports whether addr is an upstream of one of the
// handler's routes other than r, and not of r: a tier this route's callers
// are kept away from on purpose (ingest servers for a player's edge
// route). An upstream no route lists any more (removed from the config,
// gone from DNS) is not served elsewhere: the players follow it there
// while it drains.
func (h *Handler) servedElsewhere(r *Route, addr string, repl *caddy.Replacer) bool {
	if r.lists(addr, repl) {
		return false
	}
	for _, other := range h.Routes {
		if other != r && other.lists(addr, repl) {
			return true
		}
	}
	return false
}

// follow returns the upstream of the newest live publisher of key, from
// this process or, through the shared store, from any instance, when it
// may take callers.
func (h *Handler) follow(key directory.Key, now time.Time) *upstreamState {
	var es []directory.Entry
	if e, ok := directory.Process().Newest(key); ok {
		es = append(es, e)
	}
	if h.mirror != nil {
		if remote, err := h.mirror.Find(key); err == nil {
			es = append(es, remote...)
		}
	}
	e, ok := directory.Newest(es)
	if !ok {
		return nil
	}
	s, ok := upstreamStates.Load(e.Upstream)
	var u *upstreamState
	if ok {
		u = s.(*upstreamState)
	} else {
		// Reached through a placeholder, or by another instance.
		u = dynamicStateOf(e.Upstream)
	}
	if !u.healthy(now) {
		return nil
	}
	return u
}

// established enters a publisher's upstream in the directory, and counts
// a player; done undoes it when the session ends.
func (pl *placement) established(info *streamid.Info, upstream string) (done func()) {
	pl.taken = true
	if pl.pub != nil {
		pl.pub.Established(upstream, time.Now())
		return pl.pub.End
	}
	return directory.Process().Play(directory.Key{Host: info.Host, Resource: info.Resource})
}

// abandon forgets a publisher whose session never started; once its
// session is established, it does nothing.
func (pl *placement) abandon() {
	if pl != nil && pl.pub != nil && !pl.taken {
		pl.pub.End()
	}
}

// unmarshalDirectory reads the directory and publisher_conflict options.
func (h *Handler) unmarshalDirectory(d *caddyfile.Dispenser, opt string) error {
	if opt == "publisher_conflict" {
		if !d.NextArg() {
			return d.ArgErr()
		}
		h.PublisherConflict = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		return nil
	}
	args := d.RemainingArgs()
	if len(args) != 2 || args[0] != "redis" {
		return d.Errf("directory: want 'directory redis HOST:PORT { ... }'")
	}
	r := &RedisDirectory{Address: args[1]}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		v := d.Val()
		switch sub {
		case "password":
			r.Password = v
		case "db":
			var n int
			if _, err := fmt.Sscanf(v, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != v {
				return d.Errf("directory: db: want a whole number, got %q", v)
			}
			r.DB = n
		case "key_prefix":
			r.KeyPrefix = v
		case "ttl":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("directory: ttl: %v", err)
			}
			r.TTL = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized directory option '%s'", sub)
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	h.Directory = &DirectoryConfig{Redis: r}
	return nil
}

// LiveStreamView is one live stream as GET /srt/streams reports it: this
// instance's streams, and other instances' from the shared store.
type LiveStreamView = directory.Entry

// streams serves GET /srt/streams.
func (a *AdminAPI) streams(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use GET", r.Method)}
	}
	t := directory.Process()
	out := t.Entries()
	if m := t.Mirror(); m != nil {
		others, err := m.List()
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadGateway, Err: fmt.Errorf("listing the shared directory: %w", err)}
		}
		for _, e := range others {
			if e.Instance != directory.Instance {
				out = append(out, e)
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// placeReason is the rejection for a caller no upstream could be chosen
// for.
func placeReason(err error) wire.RejectReason {
	switch {
	case errors.Is(err, errConflict):
		return wire.RejXConflict
	case errors.Is(err, errNoHealthy):
		return wire.RejXDown
	case errors.Is(err, errNotAllowed):
		return wire.RejXForbidden
	}
	// A placeholder upstream that names nothing: the reject line says why.
	return wire.RejXInternalError
}
