package srthandler

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/srtroute/caddy-l4-srt/internal/streamid"
	"github.com/srtroute/caddy-l4-srt/internal/wire"
)

// AuthJWT admits callers whose stream ID carries a token signed with the
// key (or one of the JWKS's keys), unexpired, whose claims allow the
// caller's resource and mode.
//
// Claims read besides exp (required) and nbf: "srt_resource", a glob or a
// list of globs the caller's resource must match; "srt_mode", a mode or a
// list of modes the caller's mode must be one of. Absent, they allow any.
type AuthJWT struct {
	// Key is an HMAC secret of 32 bytes or more (HS256/384/512), or the
	// path of a PEM file (ending in .pem, .crt or .pub) holding an RSA
	// (RS256/384/512) or ECDSA (ES256/384/512) public key or certificate.
	// Caddy placeholders such as {env.SRT_JWT_KEY} work.
	Key string `json:"key,omitempty"`
	// JWKS is the URL of a JSON Web Key Set (RSA and EC keys), fetched
	// when first needed, kept jwksRefresh and fetched again for an unknown
	// key ID.
	JWKS string `json:"jwks,omitempty"`
	// Param is the access-control key holding the token; default s. A
	// MediaMTX stream ID carries it as the password instead.
	Param string `json:"param,omitempty"`

	key     any // []byte, *rsa.PublicKey or *ecdsa.PublicKey
	methods []string
	jwks    *jwksCache
}

// JWKS bounds.
const (
	jwksRefresh  = 5 * time.Minute
	jwksRetry    = 10 * time.Second // at most one fetch this often for unknown key IDs
	maxJWKSBody  = 1 << 20
	maxJWKSKeys  = 100
	jwtClockSkew = 5 * time.Second
)

var (
	hmacMethods  = []string{"HS256", "HS384", "HS512"}
	rsaMethods   = []string{"RS256", "RS384", "RS512"}
	ecdsaMethods = []string{"ES256", "ES384", "ES512"}
)

func (a *AuthJWT) provision(caddy.Context) error {
	defaultTo(&a.Param, streamid.SessionKey)
	switch {
	case (a.Key == "") == (a.JWKS == ""):
		return errors.New("auth jwt: want key or jwks, one of them")
	case a.JWKS != "":
		u, err := url.Parse(a.JWKS)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("auth jwt: jwks: want an http(s) URL, got %q", a.JWKS)
		}
		a.jwks = &jwksCache{url: a.JWKS, client: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
		a.methods = append(append([]string{}, rsaMethods...), ecdsaMethods...)
		return nil
	}
	key, err := loadJWTKey(caddy.NewReplacer().ReplaceKnown(a.Key, ""))
	if err != nil {
		return fmt.Errorf("auth jwt: key: %w", err)
	}
	a.key = key
	switch key.(type) {
	case []byte:
		a.methods = hmacMethods
	case *rsa.PublicKey:
		a.methods = rsaMethods
	case *ecdsa.PublicKey:
		a.methods = ecdsaMethods
	}
	return nil
}

// minHMACKey is RFC 7518's floor for HS256: a key as long as the hash.
const minHMACKey = 32

// loadJWTKey reads the public key of a PEM file (a name ending in .pem,
// .crt or .pub), or takes v as an HMAC secret. A file name is never taken
// for a secret: a missing file is an error.
func loadJWTKey(v string) (any, error) {
	if !strings.HasSuffix(v, ".pem") && !strings.HasSuffix(v, ".crt") && !strings.HasSuffix(v, ".pub") {
		if len(v) < minHMACKey {
			return nil, fmt.Errorf("an HMAC secret needs %d bytes or more, got %d", minHMACKey, len(v))
		}
		return []byte(v), nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", v)
	}
	var pub any
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		pub = cert.PublicKey
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", v, err)
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("%s: want an RSA or ECDSA public key, got %T", v, pub)
}

// tokenOf finds the caller's token: the param key of the access-control
// syntax, or a MediaMTX ID's password.
func (a *AuthJWT) tokenOf(info *streamid.Info) string {
	if strings.HasPrefix(info.Raw, streamid.Prefix) {
		if a.Param == streamid.SessionKey {
			return info.Session
		}
		return info.Keys[a.Param]
	}
	if start, end, ok := streamid.MediaMTXPassword(info.Raw); ok {
		return info.Raw[start:end]
	}
	return ""
}

func (a *AuthJWT) decide(info *streamid.Info, deadline time.Time) verdict {
	if len(info.Raw) > maxStreamID {
		return verdict{reason: wire.RejXBadRequest, why: fmt.Sprintf("stream ID of %d bytes, over SRT's %d", len(info.Raw), maxStreamID)}
	}
	raw := a.tokenOf(info)
	if raw == "" {
		return verdict{reason: wire.RejXUnauthorized, why: "no token"}
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if a.jwks == nil {
			return a.key, nil
		}
		kid, _ := t.Header["kid"].(string)
		return a.jwks.keys(kid, deadline)
	}, jwt.WithValidMethods(a.methods), jwt.WithExpirationRequired(), jwt.WithLeeway(jwtClockSkew))
	if err != nil {
		return verdict{reason: wire.RejXUnauthorized, why: "token: " + err.Error()}
	}
	if ok, err := claimAllows(claims["srt_resource"], func(p string) bool { return globMatches(p, info.Resource) }); !ok {
		return verdict{reason: wire.RejXForbidden, why: "token does not allow resource" + errSuffix(err)}
	}
	if ok, err := claimAllows(claims["srt_mode"], func(m string) bool { return m == info.Mode }); !ok {
		return verdict{reason: wire.RejXForbidden, why: "token does not allow mode " + info.Mode + errSuffix(err)}
	}
	return verdict{}
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

// claimAllows reports whether a string-or-list claim allows a value: an
// absent claim allows all, a malformed one nothing.
func claimAllows(claim any, match func(string) bool) (bool, error) {
	switch c := claim.(type) {
	case nil:
		return true, nil
	case string:
		return match(c), nil
	case []any:
		for _, v := range c {
			if s, ok := v.(string); ok && match(s) {
				return true, nil
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("claim is %T, want a string or a list", claim)
}

func globMatches(pattern, s string) bool {
	gs, err := compileGlobs([]string{pattern}, false)
	return err == nil && matchAny(gs, s)
}

// jwksCache holds the keys of one JWKS URL.
type jwksCache struct {
	url    string
	client *http.Client

	mu      sync.Mutex // held across a fetch: callers wait for it, within their deadline
	byID    map[string]any
	all     []any
	fetched time.Time
	tried   time.Time
}

// keys returns the key with ID kid, or every key when the token names
// none. A stale set, or one without kid, is fetched again (unknown IDs
// at most once per jwksRetry, so forged kids cannot make us hammer the
// URL).
func (c *jwksCache) keys(kid string, deadline time.Time) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	_, known := c.byID[kid]
	stale := c.fetched.IsZero() || now.Sub(c.fetched) > jwksRefresh
	if (stale || (kid != "" && !known)) && now.Sub(c.tried) >= jwksRetry {
		c.tried = now
		if err := c.fetch(deadline); err != nil && c.fetched.IsZero() {
			return nil, err
		}
	}
	if kid == "" {
		set := jwt.VerificationKeySet{}
		for _, k := range c.all {
			set.Keys = append(set.Keys, k)
		}
		if len(set.Keys) == 0 {
			return nil, errors.New("jwks: no keys")
		}
		return set, nil
	}
	if k, ok := c.byID[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("jwks: no key %q", kid)
}

// jwk is one JSON Web Key, the fields this reader understands.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (c *jwksCache) fetch(deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks: %s answered %d", c.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBody+1))
	if err != nil {
		return fmt.Errorf("jwks: reading: %w", err)
	}
	if len(body) > maxJWKSBody {
		return fmt.Errorf("jwks: over %d bytes", maxJWKSBody)
	}
	byID, all, err := parseJWKS(body)
	if err != nil {
		return err
	}
	c.byID, c.all, c.fetched = byID, all, time.Now()
	return nil
}

// parseJWKS reads the RSA and EC signing keys of a key set; keys of other
// types or uses are skipped, malformed ones refuse the whole set.
func parseJWKS(body []byte) (map[string]any, []any, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("jwks: %w", err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, nil, fmt.Errorf("jwks: %d keys, over %d", len(set.Keys), maxJWKSKeys)
	}
	byID := map[string]any{}
	var all []any
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key any
		var err error
		switch k.Kty {
		case "RSA":
			key, err = rsaJWK(k)
		case "EC":
			key, err = ecJWK(k)
		default:
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("jwks: key %d (%q): %w", i, k.Kid, err)
		}
		all = append(all, key)
		if k.Kid != "" {
			byID[k.Kid] = key
		}
	}
	return byID, all, nil
}

func rsaJWK(k jwk) (*rsa.PublicKey, error) {
	n, err := base64.RawURLEncoding.DecodeString(k.N)
	if err != nil {
		return nil, fmt.Errorf("n: %w", err)
	}
	e, err := base64.RawURLEncoding.DecodeString(k.E)
	if err != nil {
		return nil, fmt.Errorf("e: %w", err)
	}
	if len(n) < 256 || len(n) > 2048 || len(e) == 0 || len(e) > 4 {
		return nil, errors.New("modulus of 2048 to 16384 bits and a small exponent wanted")
	}
	exp := int(new(big.Int).SetBytes(e).Int64())
	if exp < 3 || exp%2 == 0 {
		return nil, fmt.Errorf("exponent %d", exp)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, nil
}

func ecJWK(k jwk) (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	switch k.Crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("curve %q", k.Crv)
	}
	size := (curve.Params().BitSize + 7) / 8
	x, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil || len(x) != size {
		return nil, errors.New("x: want a coordinate of the curve's size")
	}
	y, err := base64.RawURLEncoding.DecodeString(k.Y)
	if err != nil || len(y) != size {
		return nil, errors.New("y: want a coordinate of the curve's size")
	}
	point := append(append([]byte{4}, x...), y...)
	// Checks the point is on the curve.
	return ecdsa.ParseUncompressedPublicKey(curve, point)
}
