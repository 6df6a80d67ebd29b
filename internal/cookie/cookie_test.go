package cookie

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

var (
	caller = netip.MustParseAddrPort("127.0.0.1:40000")
	// t0 starts a bucket.
	t0 = time.Unix(1_700_000_040, 0)
)

func TestJarValidity(t *testing.T) {
	if t0.Unix()%60 != 0 {
		t.Fatal("t0 must start a bucket")
	}
	j := NewJarWithSecret([]byte("test secret"))
	for _, issued := range []time.Duration{0, 30 * time.Second, Bucket - time.Nanosecond} {
		c := j.Issue(caller, t0.Add(issued))
		if c == 0 {
			t.Fatal("issued cookie 0")
		}
		for _, tc := range []struct {
			name  string
			addr  netip.AddrPort
			at    time.Duration // from t0
			c     uint32
			valid bool
		}{
			{"same bucket, at once", caller, issued, c, true},
			{"same bucket, last instant", caller, Bucket - time.Nanosecond, c, true},
			{"next bucket, first instant", caller, Bucket, c, true},
			{"next bucket, last instant", caller, 2*Bucket - time.Nanosecond, c, true},
			{"two buckets later", caller, 2 * Bucket, c, false},
			{"an hour later", caller, time.Hour, c, false},
			{"the bucket before it was issued", caller, -time.Nanosecond, c, false},
			{"other port", netip.MustParseAddrPort("127.0.0.1:40001"), issued, c, false},
			{"other address", netip.MustParseAddrPort("127.0.0.2:40000"), issued, c, false},
			{"IPv6 address", netip.MustParseAddrPort("[::1]:40000"), issued, c, false},
			{"the same address v4-mapped", netip.MustParseAddrPort("[::ffff:127.0.0.1]:40000"), issued, c, true},
			{"cookie 0", caller, issued, 0, false},
			{"off by one", caller, issued, c + 1, false},
			{"byte-swapped", caller, issued, c>>24 | c>>8&0xff00 | c<<8&0xff0000 | c<<24, c>>24 == c&0xff && c>>8&0xff == c>>16&0xff},
		} {
			if got := j.Valid(tc.addr, tc.c, t0.Add(tc.at)); got != tc.valid {
				t.Errorf("issued at +%v: %s: Valid = %v, want %v", issued, tc.name, got, tc.valid)
			}
		}
	}
}

func TestJarSecrets(t *testing.T) {
	a := NewJarWithSecret([]byte("secret a"))
	b := NewJarWithSecret([]byte("secret b"))
	c := a.Issue(caller, t0)
	if c != NewJarWithSecret([]byte("secret a")).Issue(caller, t0) {
		t.Error("same secret, different cookie")
	}
	if b.Valid(caller, c, t0) {
		t.Error("a cookie is valid under another secret")
	}
	// The secret is copied: changing the caller's slice changes nothing.
	s := []byte("secret a")
	j := NewJarWithSecret(s)
	s[0] = 'X'
	if j.Issue(caller, t0) != c {
		t.Error("jar aliases the secret slice")
	}
	if Process() != Process() || Process() == nil {
		t.Error("Process does not return one shared jar")
	}
	if r := NewJar(); !r.Valid(caller, r.Issue(caller, t0), t0) {
		t.Error("random jar does not validate its own cookie")
	}
}

func TestJarEarlyBuckets(t *testing.T) {
	// Bucket 0 has no previous bucket; times before 1970 must not panic.
	j := NewJarWithSecret([]byte("x"))
	for _, at := range []time.Time{time.Unix(0, 0), time.Unix(59, 0), time.Unix(-1, 0), time.Unix(-61, 0), {}} {
		c := j.Issue(caller, at)
		if c == 0 || !j.Valid(caller, c, at) || !j.Valid(caller, c, at.Add(Bucket)) {
			t.Errorf("at %v: cookie %#x not valid in its bucket and the next", at, c)
		}
		if j.Valid(caller, c, at.Add(2*Bucket)) {
			t.Errorf("at %v: cookie %#x still valid two buckets later", at, c)
		}
	}
	// Buckets are consecutive across 1970 (found by FuzzJar: a cookie
	// issued at -53 s was refused at +7 s).
	if c := j.Issue(caller, time.Unix(-53, 0)); !j.Valid(caller, c, time.Unix(7, 0)) {
		t.Error("cookie issued in the bucket before 1970 refused in the next")
	}
}

func TestJarConcurrent(t *testing.T) {
	j := NewJarWithSecret([]byte("concurrent"))
	want := j.Issue(caller, t0)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			other := netip.AddrPortFrom(caller.Addr(), uint16(g))
			for i := 0; i < 200; i++ {
				if j.Issue(caller, t0) != want || !j.Valid(caller, want, t0) {
					t.Error("cookie changed under concurrency")
					return
				}
				_ = j.Valid(other, j.Issue(other, t0), t0)
			}
		}(g)
	}
	wg.Wait()
}

// FuzzJar: a jar validates exactly the cookies it issued to that address
// in the current or the previous bucket, and never 0.
func FuzzJar(f *testing.F) {
	f.Add([]byte("secret"), []byte{127, 0, 0, 1}, uint16(40000), int64(1_700_000_040), uint32(0), int64(0))
	f.Add([]byte{}, []byte{0x20, 1, 0xd, 0xb8, 15: 1}, uint16(0), int64(0), uint32(1), int64(119))
	f.Fuzz(func(t *testing.T, secret, ip []byte, port uint16, unix int64, c uint32, later int64) {
		j := NewJarWithSecret(secret)
		var a netip.Addr
		switch {
		case len(ip) >= 16:
			a = netip.AddrFrom16([16]byte(ip[:16]))
		case len(ip) >= 4:
			a = netip.AddrFrom4([4]byte(ip[:4]))
		default:
			var b [4]byte
			copy(b[:], ip)
			a = netip.AddrFrom4(b)
		}
		addr := netip.AddrPortFrom(a, port)
		now := time.Unix(unix, 0)
		issued := j.Issue(addr, now)
		if issued == 0 {
			t.Fatal("issued cookie 0")
		}
		if j.Valid(addr, 0, now) {
			t.Fatal("cookie 0 is valid")
		}
		if !j.Valid(addr, issued, now) || !j.Valid(addr, issued, now.Add(Bucket)) {
			t.Fatal("issued cookie not valid in its bucket and the next")
		}
		// Any cookie it accepts later is one it issues for the current
		// or the previous bucket.
		at := now.Add(time.Duration(later%100_000) * time.Second)
		if j.Valid(addr, c, at) && c != j.Issue(addr, at) && c != j.Issue(addr, at.Add(-Bucket)) {
			t.Fatalf("cookie %#x valid at %v but issued for neither bucket", c, at)
		}
	})
}
