// Package cookie issues and checks the SYN cookies the relay puts in its
// induction responses. A cookie is an HMAC of the caller's address and port
// and a one-minute time bucket under a per-process random secret, so a
// conclusion proves that its sender received our induction response at
// that address within the last one to two minutes, and the relay keeps no
// state for callers that never get that far.
package cookie

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"hash"
	"net/netip"
	"sync"
	"time"
)

// Bucket is the time a cookie's bucket spans. A cookie is valid in its own
// bucket and the next one.
const Bucket = time.Minute

// Jar issues and verifies cookies under one secret.
type Jar struct {
	pool sync.Pool // of hash.Hash keyed with the secret
}

// NewJar returns a Jar with a fresh random secret.
func NewJar() *Jar {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		panic("cookie: no randomness: " + err.Error()) // crypto/rand does not fail on Linux
	}
	return NewJarWithSecret(secret[:])
}

// NewJarWithSecret returns a Jar with a fixed secret, for tests and fuzzing.
func NewJarWithSecret(secret []byte) *Jar {
	key := append([]byte(nil), secret...)
	j := &Jar{}
	j.pool.New = func() any { return hmac.New(sha256.New, key) }
	return j
}

var (
	processJar     *Jar
	processJarOnce sync.Once
)

// Process returns the Jar shared by every handler in this process, so that
// a cookie issued under one configuration is honoured after a reload.
func Process() *Jar {
	processJarOnce.Do(func() { processJar = NewJar() })
	return processJar
}

// bucketOf numbers the bucket of t. Floor division keeps the numbers
// consecutive across 1970 too (fake clocks start anywhere), and b-1 in
// uint64 arithmetic is then always the previous bucket.
func bucketOf(t time.Time) uint64 {
	s, n := t.Unix(), int64(Bucket/time.Second)
	b := s / n
	if s%n < 0 {
		b--
	}
	return uint64(b)
}

func (j *Jar) sum(addr netip.AddrPort, bucket uint64) uint32 {
	h := j.pool.Get().(hash.Hash)
	defer j.pool.Put(h)
	h.Reset()
	var b [16 + 2 + 8]byte
	a := addr.Addr().Unmap().As16()
	copy(b[:16], a[:])
	binary.BigEndian.PutUint16(b[16:], addr.Port())
	binary.BigEndian.PutUint64(b[18:], bucket)
	h.Write(b[:])
	var out [sha256.Size]byte
	s := h.Sum(out[:0])
	c := binary.BigEndian.Uint32(s)
	if c == 0 {
		c = 1 // 0 means "no cookie" on the wire
	}
	return c
}

// Issue returns the cookie for a caller at addr at time now.
func (j *Jar) Issue(addr netip.AddrPort, now time.Time) uint32 {
	return j.sum(addr, bucketOf(now))
}

// Valid reports whether c was issued to addr in the current or the
// previous bucket.
func (j *Jar) Valid(addr netip.AddrPort, c uint32, now time.Time) bool {
	if c == 0 {
		return false
	}
	b := bucketOf(now)
	if equal(j.sum(addr, b), c) {
		return true
	}
	return equal(j.sum(addr, b-1), c)
}

func equal(a, b uint32) bool { return subtle.ConstantTimeEq(int32(a), int32(b)) == 1 }
