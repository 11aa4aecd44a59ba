package token

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestParseJWKS(t *testing.T) {
	k := keysOnce()
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1 := mustJSON(t, public(k.rsa1))
	ec1 := mustJSON(t, public(k.ec1))
	ed := mustJSON(t, jose.JSONWebKey{Key: edPub, KeyID: "ed-1", Algorithm: "EdDSA"})
	set := func(keys ...string) string { return `{"keys":[` + strings.Join(keys, ",") + `]}` }
	encRSA := strings.Replace(rsa1, `"use":"sig"`, `"use":"enc"`, 1)
	for _, tc := range []struct {
		name    string
		body    string
		wantErr string
		kids    []string // usable keys, in order
	}{
		{"rsa ec ed25519", set(rsa1, ec1, ed), "", []string{"rsa-1", "ec-1", "ed-1"}},
		{"oct skipped", set(`{"kty":"oct","kid":"h","k":"c2VjcmV0"}`, rsa1), "", []string{"rsa-1"}},
		{"oct with RSA members skipped", set(`{"kty":"oct","kid":"h","k":"c2VjcmV0","n":"AQAB","e":"AQAB"}`, ec1), "", []string{"ec-1"}},
		{"use enc skipped", set(encRSA, ec1), "", []string{"ec-1"}},
		{"unknown use skipped", set(strings.Replace(rsa1, `"use":"sig"`, `"use":"other"`, 1), ec1), "", []string{"ec-1"}},
		{"encryption alg skipped", set(strings.Replace(rsa1, `"alg":"RS256"`, `"alg":"RSA-OAEP"`, 1), ec1), "", []string{"ec-1"}},
		{"HS256 alg on an RSA key skipped", set(strings.Replace(rsa1, `"alg":"RS256"`, `"alg":"HS256"`, 1), ec1), "", []string{"ec-1"}},
		{"private key skipped", set(mustJSON(t, k.rsa1), ec1), "", []string{"ec-1"}},
		{"unknown kty skipped", set(`{"kty":"AKP","kid":"pq","alg":"ML-DSA-44","pub":"AAAA"}`, ec1), "", []string{"ec-1"}},
		{"kty not a string skipped", set(`{"kty":1}`, ec1), "", []string{"ec-1"}},
		{"duplicate member in a key skipped", set(strings.Replace(rsa1, `"kid":"rsa-1"`, `"kid":"rsa-1","kid":"rsa-2"`, 1), ec1), "", []string{"ec-1"}},
		{"key not an object skipped", set(`"x"`, ec1), "", []string{"ec-1"}},
		{"case-variant keys member", `{"Keys":[` + rsa1 + `]}`, "no usable signing keys", nil},
		{"no keys member", `{}`, "no usable signing keys", nil},
		{"keys not an array", `{"keys":{}}`, "not a JSON JWK Set", nil},
		{"null", `null`, "no usable signing keys", nil},
		{"too many keys", set(strings.Split(strings.Repeat(ec1+"\x00", MaxJWKSKeys+1), "\x00")[:MaxJWKSKeys+1]...), "more than", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseJWKS([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, key := range m.all {
				kids = append(kids, key.kid)
				switch key.pub.(type) {
				case []byte:
					t.Errorf("key %s is symmetric", key.kid)
				}
			}
			if fmt.Sprint(kids) != fmt.Sprint(tc.kids) {
				t.Errorf("keys = %v, want %v", kids, tc.kids)
			}
		})
	}
}

func TestVerifyKeyAccepts(t *testing.T) {
	k := keysOnce()
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey := &verifyKey{pub: public(k.rsa1).Key}
	ecKey := &verifyKey{pub: public(k.ec1).Key}
	p384 := &verifyKey{pub: mustEC384().Public()}
	edKey := &verifyKey{pub: edPub}
	pinnedRS := &verifyKey{pub: public(k.rsa1).Key, alg: "RS256"}
	for _, tc := range []struct {
		key  *verifyKey
		alg  jose.SignatureAlgorithm
		want bool
	}{
		{rsaKey, jose.RS256, true}, {rsaKey, jose.PS512, true}, {rsaKey, jose.ES256, false}, {rsaKey, jose.HS256, false}, {rsaKey, jose.EdDSA, false},
		{ecKey, jose.ES256, true}, {ecKey, jose.ES384, false}, {ecKey, jose.RS256, false},
		{p384, jose.ES384, true}, {p384, jose.ES256, false},
		{edKey, jose.EdDSA, true}, {edKey, jose.ES256, false},
		{pinnedRS, jose.RS256, true}, {pinnedRS, jose.PS256, false}, {pinnedRS, jose.RS512, false},
		{&verifyKey{pub: []byte("secret")}, jose.HS256, false},
	} {
		if got := tc.key.accepts(tc.alg); got != tc.want {
			t.Errorf("%T (alg %q).accepts(%s) = %v, want %v", tc.key.pub, tc.key.alg, tc.alg, got, tc.want)
		}
	}
}

func TestEdDSATokenVerifies(t *testing.T) {
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := jose.JSONWebKey{Key: edPriv, KeyID: "ed-1", Algorithm: "EdDSA", Use: "sig"}
	c := newClock()
	v := newVerifier(t, newIDP(t, key), c, func(o *Options) { o.Issuers[0].Algorithms = []string{"EdDSA"} })
	mustVerify(t, v, signAT(t, key, baseClaims(c)))
}

func TestUnknownKidRefetchesOnceWithinFloor(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	mustVerify(t, v, signAT(t, k.rsa1, baseClaims(c)))
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("fetches after first use = %d, want 1", n)
	}

	// A burst of tokens with an unknown kid, concurrently, once the floor
	// since the first fetch has passed: one refetch.
	c.Advance(DefaultMinRefetch)
	unknown := signAT(t, k.rsa2, baseClaims(c))
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 32 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), unknown); !errors.Is(err, ErrUnknownKey) {
				bad.Add(1)
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d verifications did not fail with ErrUnknownKey", bad.Load())
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("fetches after unknown-kid burst = %d, want 2", n)
	}

	// The issuer rotates, but the floor still holds: no fetch, still unknown.
	p.publish(t, k.rsa1, k.rsa2)
	c.Advance(DefaultMinRefetch - time.Second)
	for _, kid := range []string{"rsa-2", "random-1", "random-2"} {
		key := k.rsa2
		key.KeyID = kid
		mustFail(t, v, signAT(t, key, baseClaims(c)), ErrUnknownKey)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("fetches within the floor = %d, want 2", n)
	}

	// At the floor, the next unknown kid refetches and finds the new key.
	c.Advance(time.Second)
	mustVerify(t, v, unknown)
	if n := p.fetches.Load(); n != 3 {
		t.Fatalf("fetches after the floor = %d, want 3", n)
	}
	// Random kids right after: refused without a fetch.
	random := k.rsa2
	random.KeyID = "random-3"
	mustFail(t, v, signAT(t, random, baseClaims(c)), ErrUnknownKey)
	if n := p.fetches.Load(); n != 3 {
		t.Fatalf("fetches = %d, want 3", n)
	}
}

func TestConcurrentFirstUseFetchesOnce(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	gate := make(chan struct{})
	p.mu.Lock()
	p.gate = gate
	p.mu.Unlock()
	v := newVerifier(t, p, c)
	tok := signAT(t, k.rsa1, baseClaims(c))

	var started, done sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		started.Add(1)
		done.Go(func() {
			started.Done()
			if _, err := v.Verify(context.Background(), tok); err != nil {
				failed.Add(1)
			}
		})
	}
	started.Wait()
	for p.fetches.Load() == 0 {
		time.Sleep(time.Millisecond) // poll until the one fetch is in flight
	}
	close(gate)
	done.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of 16 concurrent first verifications failed", failed.Load())
	}
	if n := p.fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1 (coalesced)", n)
	}
}

func TestWaitForJWKSHonoursContext(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	gate := make(chan struct{})
	p.mu.Lock()
	p.gate = gate
	p.mu.Unlock()
	v := newVerifier(t, p, c)
	tok := signAT(t, k.rsa1, baseClaims(c))

	first := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), tok)
		first <- err
	}()
	for p.fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := v.Verify(ctx, tok)
	if Reason(err) != ReasonJWKSUnavailable {
		t.Errorf("cancelled waiter: err = %v, reason %q", err, Reason(err))
	}
	close(gate)
	if err := <-first; err != nil {
		t.Errorf("the fetching caller failed: %v", err)
	}
}

func TestKeyRotationAtIssuer(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	long := with(baseClaims(c), "exp", c.Now().Add(3*time.Hour).Unix())
	old := signAT(t, k.rsa1, long)
	mustVerify(t, v, old)

	// The issuer adds a new key and starts signing with it.
	p.publish(t, k.rsa1, k.rsa2)
	c.Advance(DefaultMinRefetch)
	next := signAT(t, k.rsa2, long)
	mustVerify(t, v, next)
	mustVerify(t, v, old) // the old key is still published
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("fetches = %d, want 2", n)
	}

	// The issuer withdraws the old key. Within the refresh interval the old
	// token still verifies (from the cache); after it, it is refused, cache
	// or not, while the new one keeps working.
	p.publish(t, k.rsa2)
	mustVerify(t, v, old)
	c.Advance(DefaultRefreshInterval)
	mustFail(t, v, old, ErrUnknownKey)
	mustVerify(t, v, next)
	if n := p.fetches.Load(); n != 3 {
		t.Errorf("fetches = %d, want 3", n)
	}
}

func TestStaleKeysUsedWhileRefreshFails(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	long := with(baseClaims(c), "exp", c.Now().Add(3*time.Hour).Unix())
	tok := signAT(t, k.rsa1, long)
	mustVerify(t, v, tok)

	p.setBody(http.StatusInternalServerError, []byte("down"))
	c.Advance(DefaultRefreshInterval)
	mustVerify(t, v, tok) // refresh failed: the previous keys stay in use
	mustVerify(t, v, tok) // no new fetch within the floor
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("fetches = %d, want 2", n)
	}
	c.Advance(DefaultMinRefetch)
	mustVerify(t, v, tok)
	if n := p.fetches.Load(); n != 3 {
		t.Errorf("fetches = %d, want 3", n)
	}
	mustFail(t, v, signAT(t, k.rsa2, long), ErrUnknownKey)
}

func TestJWKSFetchFailureFailsClosed(t *testing.T) {
	k := keysOnce()
	tooBig := `{"keys":[],"pad":"` + strings.Repeat("x", MaxJWKSBytes) + `"}`
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string // in the error message
	}{
		{"500", http.StatusInternalServerError, "oops", "status 500"},
		{"404", http.StatusNotFound, "", "status 404"},
		{"not JSON", http.StatusOK, "<html>", "not a JSON JWK Set"},
		{"duplicate keys member", http.StatusOK, `{"keys":[],"keys":[]}`, "not a JSON JWK Set"},
		{"empty set", http.StatusOK, `{"keys":[]}`, "no usable signing keys"},
		{"oct only", http.StatusOK, `{"keys":[{"kty":"oct","kid":"rsa-1","k":"c2VjcmV0"}]}`, "no usable signing keys"},
		{"too large", http.StatusOK, tooBig, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			p := newIDP(t)
			p.setBody(tc.status, []byte(tc.body))
			v := newVerifier(t, p, c)
			tok := signAT(t, k.rsa1, baseClaims(c))
			err := mustFail(t, v, tok, ErrJWKSUnavailable)
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p.url()) {
				t.Errorf("error %q lacks %q or the JWKS URL", err, tc.want)
			}
			if Reason(err) != "jwks-unavailable" {
				t.Errorf("Reason = %q", Reason(err))
			}
			// Failures are rate-limited too, then recovery.
			mustFail(t, v, tok, ErrJWKSUnavailable)
			if n := p.fetches.Load(); n != 1 {
				t.Errorf("fetches = %d, want 1", n)
			}
			p.publish(t, k.rsa1)
			c.Advance(DefaultMinRefetch)
			mustVerify(t, v, tok)
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		c := newClock()
		p := newIDP(t, k.rsa1)
		p.srv.Close()
		v := newVerifier(t, p, c)
		mustFail(t, v, signAT(t, k.rsa1, baseClaims(c)), ErrJWKSUnavailable)
	})
}

func TestJWKSRedirectDowngradeRefused(t *testing.T) {
	k := keysOnce()
	c := newClock()
	srv := httptest.NewServer(http.RedirectHandler("http://jwks.example.test/keys", http.StatusFound))
	t.Cleanup(srv.Close)
	v, err := New(Options{Issuers: []Issuer{{Issuer: testIss, JWKSURL: srv.URL, Audiences: []string{testAud}, Algorithms: []string{"RS256"}}}, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), signAT(t, k.rsa1, baseClaims(c)))
	if !errors.Is(err, ErrJWKSUnavailable) || !strings.Contains(err.Error(), "not https refused") {
		t.Errorf("err = %v", err)
	}
}

func TestJWKAlgMismatchRejected(t *testing.T) {
	// The JWK says RS256; a PS256 token under its kid is refused even though
	// PS256 is pinned and go-jose would verify it with the RSA key.
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c, func(o *Options) { o.Issuers[0].Algorithms = []string{"RS256", "PS256"} })
	ps := sign(t, k.rsa1, baseClaims(c), signOpts{alg: jose.PS256, typ: "at+jwt"})
	mustFail(t, v, ps, ErrUnknownKey)
	if n := p.fetches.Load(); n != 1 {
		t.Errorf("an alg mismatch caused a refetch: fetches = %d", n)
	}

	// Control: without alg in the JWK, PS256 with the RSA key is fine.
	noAlg := k.rsa1
	noAlg.Algorithm = ""
	p2 := newIDP(t, noAlg)
	v2 := newVerifier(t, p2, c, func(o *Options) { o.Issuers[0].Algorithms = []string{"RS256", "PS256"} })
	mustVerify(t, v2, ps)
}

func TestCurveMismatchRejected(t *testing.T) {
	// An ES256 header naming a P-384 key: the key does not accept ES256.
	k := keysOnce()
	c := newClock()
	p384 := mustEC384()
	p := newIDP(t, k.ec1, jose.JSONWebKey{Key: p384, KeyID: "ec-384", Use: "sig"})
	v := newVerifier(t, p, c)
	tok := enc(`{"alg":"ES256","kid":"ec-384","typ":"at+jwt"}`) + "." + enc(mustJSON(t, baseClaims(c))) + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	mustFail(t, v, tok, ErrUnknownKey)
}

func TestEncryptionKeyNotUsedForSignature(t *testing.T) {
	k := keysOnce()
	c := newClock()
	encKey := k.rsa1
	encKey.Use = "enc"
	encKey.Algorithm = "RSA-OAEP-256"
	v := newVerifier(t, newIDP(t, encKey, k.ec1), c)
	mustFail(t, v, sign(t, k.rsa1, baseClaims(c), signOpts{alg: jose.RS256, typ: "at+jwt"}), ErrUnknownKey)
}

func TestWeakRSAKeyInJWKSIgnored(t *testing.T) {
	k := keysOnce()
	c := newClock()
	weak := jose.JSONWebKey{Key: mustRSA(1024), KeyID: "weak", Algorithm: "RS256", Use: "sig"}
	v := newVerifier(t, newIDP(t, weak, k.ec1), c)
	mustFail(t, v, signAT(t, weak, baseClaims(c)), ErrUnknownKey)
}

func TestPrivateKeyInJWKSIgnored(t *testing.T) {
	// An issuer that publishes a private key has lost it: tokens under that
	// key are refused.
	k := keysOnce()
	c := newClock()
	p := newIDP(t)
	p.setBody(http.StatusOK, []byte(mustJSON(t, map[string]any{"keys": []any{k.rsa1, public(k.ec1)}})))
	v := newVerifier(t, p, c)
	mustFail(t, v, signAT(t, k.rsa1, baseClaims(c)), ErrUnknownKey)
	mustVerify(t, v, signAT(t, k.ec1, baseClaims(c)))
}

func TestTokenWithoutKID(t *testing.T) {
	k := keysOnce()
	c := newClock()
	noKID := signOpts{typ: "at+jwt", noKID: true}
	t.Run("single key", func(t *testing.T) {
		v := newVerifier(t, newIDP(t, k.rsa1), c)
		mustVerify(t, v, sign(t, k.rsa1, baseClaims(c), noKID))
	})
	t.Run("one key fits the alg", func(t *testing.T) {
		v := newVerifier(t, newIDP(t, k.rsa1, k.ec1), c)
		mustVerify(t, v, sign(t, k.ec1, baseClaims(c), noKID))
	})
	t.Run("ambiguous", func(t *testing.T) {
		v := newVerifier(t, newIDP(t, k.rsa1, k.rsa2), c)
		mustFail(t, v, sign(t, k.rsa1, baseClaims(c), noKID), ErrUnknownKey)
	})
}
