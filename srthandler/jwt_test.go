package srthandler

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/srtroute/caddy-l4-srt/internal/streamid"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pemFile(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func provisioned(t *testing.T, a *AuthJWT) *AuthJWT {
	t.Helper()
	if err := a.provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return a
}

func live(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func decideFor(a *AuthJWT, id string) verdict {
	info := streamid.Parse(id)
	return a.decide(&info, time.Now().Add(time.Second))
}

func TestAuthJWT(t *testing.T) {
	secret := []byte("hs-secret-of-32-bytes-or-so-0123")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	hs := provisioned(t, &AuthJWT{Key: string(secret)})
	rs := provisioned(t, &AuthJWT{Key: pemFile(t, &rsaKey.PublicKey), Param: "token"})
	es := provisioned(t, &AuthJWT{Key: pemFile(t, &ecKey.PublicKey)})

	restricted := live(jwt.MapClaims{"srt_resource": []string{"live/*", "news/a"}, "srt_mode": "publish"})
	for _, c := range []struct {
		name string
		a    *AuthJWT
		id   string
		want wire.RejectReason
	}{
		{"HS256 valid", hs, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodHS256, secret, "", live(nil)), 0},
		{"RS256 valid, own param", rs, "#!::r=live/a,token=" + sign(t, jwt.SigningMethodRS256, rsaKey, "", live(nil)), 0},
		{"ES256 valid", es, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodES256, ecKey, "", live(nil)), 0},
		{"MediaMTX password", hs, "publish:live/a:user:" + sign(t, jwt.SigningMethodHS256, secret, "", live(nil)), 0},
		{"claims allow", es, "#!::r=news/a,m=publish,s=" + sign(t, jwt.SigningMethodES256, ecKey, "", restricted), 0},
		{"wrong resource", es, "#!::r=vod/a,m=publish,s=" + sign(t, jwt.SigningMethodES256, ecKey, "", restricted), wire.RejXForbidden},
		{"wrong mode", es, "#!::r=live/a,m=request,s=" + sign(t, jwt.SigningMethodES256, ecKey, "", restricted), wire.RejXForbidden},
		{"malformed claim", hs, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodHS256, secret, "", live(jwt.MapClaims{"srt_mode": 7})), wire.RejXForbidden},
		{"expired", hs, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}), wire.RejXUnauthorized},
		{"no expiry", hs, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "x"}), wire.RejXUnauthorized},
		{"not yet valid", hs, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodHS256, secret, "", live(jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()})), wire.RejXUnauthorized},
		{"wrong HMAC key", hs, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodHS256, []byte("another secret"), "", live(nil)), wire.RejXUnauthorized},
		{"wrong EC key", es, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodES256, otherEC, "", live(nil)), wire.RejXUnauthorized},
		// An HMAC token signed with the RSA public key's bytes must not pass.
		{"alg confusion", rs, "#!::r=live/a,token=" + sign(t, jwt.SigningMethodHS256, x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), "", live(nil)), wire.RejXUnauthorized},
		{"alg none", hs, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", live(nil)), wire.RejXUnauthorized},
		{"malformed", hs, "#!::r=live/a,s=not.a.jwt", wire.RejXUnauthorized},
		{"garbage", hs, "#!::r=live/a,s=" + strings.Repeat("\xff", 40), wire.RejXUnauthorized},
		{"no token", hs, "#!::r=live/a", wire.RejXUnauthorized},
		{"token in the wrong key", rs, "#!::r=live/a,s=" + sign(t, jwt.SigningMethodRS256, rsaKey, "", live(nil)), wire.RejXUnauthorized},
		{"plain ID", hs, "live/a", wire.RejXUnauthorized},
		{"over-long ID", hs, "#!::r=live/a,x=" + strings.Repeat("a", 500) + ",s=" + sign(t, jwt.SigningMethodHS256, secret, "", live(nil)), wire.RejXBadRequest},
	} {
		if got := decideFor(c.a, c.id); got.reason != c.want {
			t.Errorf("%s: got %v (%s), want %v", c.name, got.reason, got.why, c.want)
		}
	}
}

func jwkOf(kid string, pub any) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := k.Bytes()
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:])}
	}
	panic("key type")
}

// TestAuthJWKS: keys come from the test's own JWKS server, are kept, and
// a token with a new key ID fetches the set again.
func TestAuthJWKS(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	later, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var fetches atomic.Int64
	var keys atomic.Value
	keys.Store([]map[string]string{jwkOf("r1", &rsaKey.PublicKey), jwkOf("e1", &ecKey.PublicKey)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys.Load()})
	}))
	defer srv.Close()

	a := provisioned(t, &AuthJWT{JWKS: srv.URL})
	for _, c := range []struct {
		name string
		tok  string
		want wire.RejectReason
	}{
		{"RS256 by kid", sign(t, jwt.SigningMethodRS256, rsaKey, "r1", live(nil)), 0},
		{"ES256 by kid", sign(t, jwt.SigningMethodES256, ecKey, "e1", live(nil)), 0},
		{"no kid: any key", sign(t, jwt.SigningMethodES256, ecKey, "", live(nil)), 0},
		{"kid of another key", sign(t, jwt.SigningMethodES256, ecKey, "r1", live(nil)), wire.RejXUnauthorized},
		{"HS256 refused", sign(t, jwt.SigningMethodHS256, []byte("x"), "r1", live(nil)), wire.RejXUnauthorized},
	} {
		if got := decideFor(a, "#!::r=live/a,s="+c.tok); got.reason != c.want {
			t.Errorf("%s: got %v (%s), want %v", c.name, got.reason, got.why, c.want)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d JWKS fetches, want 1 (kept)", n)
	}
	// A key added to the set is found once its ID is seen.
	keys.Store([]map[string]string{jwkOf("e2", &later.PublicKey)})
	a.jwks.tried = time.Time{} // past jwksRetry
	if got := decideFor(a, "#!::r=live/a,s="+sign(t, jwt.SigningMethodES256, later, "e2", live(nil))); got.reason != 0 {
		t.Errorf("new key: %v (%s)", got.reason, got.why)
	}
	// Unknown IDs do not make every caller fetch.
	before := fetches.Load()
	for range 5 {
		decideFor(a, "#!::r=live/a,s="+sign(t, jwt.SigningMethodES256, later, "nope", live(nil)))
	}
	if n := fetches.Load() - before; n > 1 {
		t.Errorf("unknown key IDs caused %d fetches", n)
	}
}

func TestParseJWKS(t *testing.T) {
	for _, body := range []string{
		`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`, // modulus too small
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"` + strings.Repeat("A", 43) + `","y":"` + strings.Repeat("A", 43) + `"}]}`, // not on the curve
		`{"keys":[{"kty":"EC","crv":"P-999","x":"AA","y":"AA"}]}`,
		`not json`,
	} {
		if _, _, err := parseJWKS([]byte(body)); err == nil {
			t.Errorf("parseJWKS(%s) accepted it", body)
		}
	}
	byID, all, err := parseJWKS([]byte(`{"keys":[{"kty":"oct","k":"AA"},{"kty":"OKP"}]}`))
	if err != nil || len(byID) != 0 || len(all) != 0 {
		t.Errorf("unknown key types: %v %v %v", byID, all, err)
	}
}

// FuzzParseJWKS: any body is read in bounded work without a panic.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _, _ = parseJWKS(body)
	})
}
