package directory

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store in a Redis server shared by several proxy instances.
// Each instance writes one key per live stream, PREFIX s:HOST:RESOURCE:ID
// (host and resource query-escaped), holding its Entry as JSON, and adds ID
// to the stream's set PREFIX i:HOST:RESOURCE. Both carry the TTL, and only
// the owner writes or deletes its key; a reader skips (and drops from the
// set) IDs whose key has expired.
type Redis struct {
	c        *redis.Client
	prefix   string
	instance string
	ttl      time.Duration
}

// RedisOptions configure a Redis store.
type RedisOptions struct {
	Addr, Password string
	DB             int
	Prefix         string
	TTL            time.Duration
	// Timeout bounds dialing, each read and each write.
	Timeout time.Duration
	// Instance is the ID the entries are written under; default Instance.
	Instance string
}

// NewRedis returns a store on a Redis server. It does not connect yet.
func NewRedis(o RedisOptions) *Redis {
	return &Redis{
		c: redis.NewClient(&redis.Options{
			Addr: o.Addr, Password: o.Password, DB: o.DB,
			DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
			PoolTimeout: o.Timeout, MaxRetries: -1, ContextTimeoutEnabled: true,
			PoolSize: 8, MinIdleConns: 1,
			// No CLIENT SETINFO: a failed first command must not cost a
			// second round trip.
			DisableIdentity: true,
		}),
		prefix: o.Prefix, instance: cmp.Or(o.Instance, Instance), ttl: o.TTL,
	}
}

// Close closes the client.
func (r *Redis) Close() error { return r.c.Close() }

func (r *Redis) stream(k Key) string {
	return url.QueryEscape(k.Host) + ":" + url.QueryEscape(k.Resource)
}

func (r *Redis) setKey(k Key) string    { return r.prefix + "i:" + r.stream(k) }
func (r *Redis) entryBase(k Key) string { return r.prefix + "s:" + r.stream(k) + ":" }

// findScript returns the live entries of one stream and drops the IDs of
// instances whose entry expired from its set.
var findScript = redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
	local v = redis.call('GET', ARGV[1] .. id)
	if v then table.insert(out, v) else redis.call('SREM', KEYS[1], id) end
end
return out`)

// claimScript writes this instance's entry unless another instance has a
// live one: the check and the write are one step.
var claimScript = redis.NewScript(`
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
	if id ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. id) == 1 then return 0 end
end
redis.call('SET', ARGV[1] .. ARGV[2], ARGV[3], 'PX', ARGV[4])
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1`)

// Find implements Store.
func (r *Redis) Find(ctx context.Context, k Key) ([]Entry, error) {
	vals, err := findScript.Run(ctx, r.c, []string{r.setKey(k)}, r.entryBase(k)).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redis directory: find: %w", err)
	}
	out := make([]Entry, 0, len(vals))
	for _, v := range vals {
		var e Entry
		if json.Unmarshal([]byte(v), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// Claim implements Store.
func (r *Redis) Claim(ctx context.Context, e Entry) (bool, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	n, err := claimScript.Run(ctx, r.c, []string{r.setKey(e.Key)}, r.entryBase(e.Key), r.instance, b, r.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("redis directory: claim: %w", err)
	}
	return n == 1, nil
}

// Put implements Store: one round trip for every entry.
func (r *Redis) Put(ctx context.Context, es []Entry) error {
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range es {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			p.Set(ctx, r.entryBase(e.Key)+r.instance, b, r.ttl)
			p.SAdd(ctx, r.setKey(e.Key), r.instance)
			p.PExpire(ctx, r.setKey(e.Key), r.ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis directory: put: %w", err)
	}
	return nil
}

// Delete implements Store: this instance's entry only.
func (r *Redis) Delete(ctx context.Context, k Key) error {
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.entryBase(k)+r.instance)
		p.SRem(ctx, r.setKey(k), r.instance)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis directory: delete: %w", err)
	}
	return nil
}

// maxList bounds what List reads: it serves the admin API, not callers.
const maxList = 10000

// List implements Store.
func (r *Redis) List(ctx context.Context) ([]Entry, error) {
	var keys []string
	it := r.c.Scan(ctx, 0, r.prefix+"s:*", 500).Iterator()
	for it.Next(ctx) && len(keys) < maxList {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("redis directory: list: %w", err)
	}
	var out []Entry
	for len(keys) > 0 {
		n := min(len(keys), 500)
		vals, err := r.c.MGet(ctx, keys[:n]...).Result()
		if err != nil {
			return nil, fmt.Errorf("redis directory: list: %w", err)
		}
		keys = keys[n:]
		for _, v := range vals {
			s, ok := v.(string)
			var e Entry
			if ok && json.Unmarshal([]byte(strings.Clone(s)), &e) == nil {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

var _ Store = (*Redis)(nil)
