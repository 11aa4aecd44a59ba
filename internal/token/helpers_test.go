package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	testIss = "https://idp.example.test"
	testAud = "api://gatehouse"
)

var t0 = time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is the injected clock.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Test keys, generated once per test binary.
type testKeys struct {
	rsa1, rsa2 jose.JSONWebKey // RSA 2048, kid rsa-1 / rsa-2, alg RS256
	ec1        jose.JSONWebKey // P-256, kid ec-1, alg ES256
	attacker   jose.JSONWebKey // RSA 2048, kid rsa-1 (same kid as the real one), never published
}

var keysOnce = sync.OnceValue(func() *testKeys {
	r1 := mustRSA(2048)
	r2 := mustRSA(2048)
	ra := mustRSA(2048)
	e1, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return &testKeys{
		rsa1:     jose.JSONWebKey{Key: r1, KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
		rsa2:     jose.JSONWebKey{Key: r2, KeyID: "rsa-2", Algorithm: "RS256", Use: "sig"},
		ec1:      jose.JSONWebKey{Key: e1, KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
		attacker: jose.JSONWebKey{Key: ra, KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
	}
})

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func public(k jose.JSONWebKey) jose.JSONWebKey { return k.Public() }

// testIDP serves a JWKS on 127.0.0.1 and counts fetches.
type testIDP struct {
	srv     *httptest.Server
	fetches atomic.Int64

	mu     sync.Mutex // guards body, status and gate
	body   []byte
	status int
	gate   chan struct{} // when non-nil, requests wait until it is closed
}

func newIDP(t testing.TB, keys ...jose.JSONWebKey) *testIDP {
	t.Helper()
	p := &testIDP{status: http.StatusOK}
	p.publish(t, keys...)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		body, status, gate := p.body, p.status, p.gate
		p.mu.Unlock()
		if gate != nil {
			<-gate
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// publish sets the JWKS to the public halves of keys.
func (p *testIDP) publish(t testing.TB, keys ...jose.JSONWebKey) {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, public(k))
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	p.setBody(http.StatusOK, b)
}

func (p *testIDP) setBody(status int, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.body = status, b
}

func (p *testIDP) url() string { return p.srv.URL + "/jwks" }

// newVerifier returns a Verifier for testIss/testAud with RS256 and ES256
// pinned, keys from p, on clock c. mod may adjust the options.
func newVerifier(t testing.TB, p *testIDP, c *fakeClock, mod ...func(*Options)) *Verifier {
	t.Helper()
	o := Options{
		Issuers: []Issuer{{
			Issuer:     testIss,
			JWKSURL:    p.url(),
			Audiences:  []string{testAud},
			Algorithms: []string{"RS256", "ES256"},
		}},
		Now:           c.Now,
		RejectIssuers: []string{"https://gatehouse.example.test"},
	}
	for _, m := range mod {
		m(&o)
	}
	v, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// baseClaims are valid access-token claims at the clock's time.
func baseClaims(c *fakeClock) map[string]any {
	now := c.Now()
	return map[string]any{
		"iss":    testIss,
		"sub":    "alice",
		"aud":    testAud,
		"exp":    now.Add(10 * time.Minute).Unix(),
		"iat":    now.Add(-time.Minute).Unix(),
		"jti":    "jti-1",
		"email":  "alice@example.test",
		"groups": []string{"admins", "staff"},
		"scope":  "read write",
	}
}

// with returns a copy of m with the given changes; a nil value deletes.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
		} else {
			out[k] = kv[i+1]
		}
	}
	return out
}

// signOpts shape a test token.
type signOpts struct {
	alg     jose.SignatureAlgorithm // default: the key's Algorithm
	noKID   bool
	typ     string // "" means no typ header
	headers map[jose.HeaderKey]any
	embed   bool // EmbedJWK
}

// sign signs claims (a map, or raw payload bytes) with key.
func sign(t testing.TB, key jose.JSONWebKey, claims any, so signOpts) string {
	t.Helper()
	var payload []byte
	switch c := claims.(type) {
	case []byte:
		payload = c
	case string:
		payload = []byte(c)
	default:
		var err error
		if payload, err = json.Marshal(c); err != nil {
			t.Fatal(err)
		}
	}
	alg := so.alg
	if alg == "" {
		alg = jose.SignatureAlgorithm(key.Algorithm)
	}
	var sk any = key
	if so.noKID || so.embed {
		sk = key.Key
	}
	opts := &jose.SignerOptions{EmbedJWK: so.embed}
	if so.typ != "" {
		opts = opts.WithType(jose.ContentType(so.typ))
	}
	for k, v := range so.headers {
		opts = opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: sk}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signAT signs claims with key as an RFC 9068 access token.
func signAT(t testing.TB, key jose.JSONWebKey, claims any) string {
	t.Helper()
	return sign(t, key, claims, signOpts{typ: "at+jwt"})
}

// mustFail asserts that Verify fails with want.
func mustFail(t *testing.T, v *Verifier, tok string, want error) error {
	t.Helper()
	c, err := v.Verify(context.Background(), tok)
	if err == nil {
		t.Fatalf("Verify succeeded (sub %q), want %v", c.Subject, want)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("Verify error = %v (reason %s), want %v", err, Reason(err), want)
	}
	return err
}

func mustVerify(t *testing.T, v *Verifier, tok string) *Claims {
	t.Helper()
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v (reason %s)", err, Reason(err))
	}
	return c
}
