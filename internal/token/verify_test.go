package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func TestVerifyValidTokens(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1, k.ec1)
	v := newVerifier(t, p, c)
	now := c.Now()

	want := &Claims{
		Issuer:   testIss,
		Subject:  "alice",
		Audience: []string{testAud},
		Expiry:   time.Unix(now.Add(10*time.Minute).Unix(), 0),
		IssuedAt: time.Unix(now.Add(-time.Minute).Unix(), 0),
		ID:       "jti-1",
		Email:    "alice@example.test",
		Groups:   []string{"admins", "staff"},
		Scope:    "read write",
	}
	for _, tc := range []struct {
		name string
		key  jose.JSONWebKey
		so   signOpts
	}{
		{"RS256 at+jwt", k.rsa1, signOpts{typ: "at+jwt"}},
		{"ES256 at+jwt", k.ec1, signOpts{typ: "at+jwt"}},
		{"RS256 typ JWT", k.rsa1, signOpts{typ: "JWT"}},
		{"ES256 no typ", k.ec1, signOpts{}},
		{"application/at+jwt", k.rsa1, signOpts{typ: "application/at+jwt"}},
		{"AT+JWT upper case", k.rsa1, signOpts{typ: "AT+JWT"}},
		{"x5t thumbprint header is harmless", k.rsa1, signOpts{typ: "at+jwt", headers: map[jose.HeaderKey]any{"x5t": "abc"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := sign(t, tc.key, baseClaims(c), tc.so)
			got := mustVerify(t, v, raw)
			if !strings.HasPrefix(got.Ref, "tok:") || len(got.Ref) != 28 || strings.Contains(raw, got.Ref[4:]) {
				t.Errorf("Ref = %q, want tok: and 24 hex digits of the hash", got.Ref)
			}
			if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Raw" || p.String() == "Ref" }, cmp.Ignore())); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if got.Raw["sub"] != "alice" || got.Raw["scope"] != "read write" {
				t.Errorf("Raw = %v", got.Raw)
			}
		})
	}
}

func TestAudienceForms(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c, func(o *Options) { o.Issuers[0].Audiences = []string{"api://other", testAud} })
	for _, aud := range []any{testAud, []string{testAud}, []string{"x", testAud, "y"}, []string{"api://other"}} {
		t.Run(fmt.Sprint(aud), func(t *testing.T) {
			mustVerify(t, v, signAT(t, k.rsa1, with(baseClaims(c), "aud", aud)))
		})
	}
}

func TestGroupsClaimForms(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	for _, tc := range []struct {
		name   string
		groups any
		want   []string
	}{
		{"array", []string{"a", "b"}, []string{"a", "b"}},
		{"single string", "a", []string{"a"}},
		{"absent", nil, nil},
		{"empty array", []string{}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustVerify(t, v, signAT(t, k.rsa1, with(baseClaims(c), "groups", tc.groups)))
			if diff := cmp.Diff(tc.want, got.Groups); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClaimTypeConfusionRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	for _, tc := range []struct {
		name string
		kv   []any
	}{
		{"exp as string", []any{"exp", fmt.Sprint(c.Now().Add(time.Hour).Unix())}},
		{"iat as bool", []any{"iat", true}},
		{"aud as number", []any{"aud", 7}},
		{"aud array with number", []any{"aud", []any{testAud, 7}}},
		{"sub as object", []any{"sub", map[string]any{"id": "alice"}}},
		{"iss as array", []any{"iss", []string{testIss}}},
		{"email as number", []any{"email", 1}},
		{"groups as object", []any{"groups", map[string]any{"admins": true}}},
		{"groups with number", []any{"groups", []any{"admins", 1}}},
		{"scope as array", []any{"scope", []string{"read"}}},
		{"exp beyond any date", []any{"exp", 1e300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), tc.kv...)), ErrMalformed)
		})
	}
	t.Run("payload not an object", func(t *testing.T) {
		for _, payload := range []string{`[]`, `"x"`, `null`, `{`, ``} {
			mustFail(t, v, signAT(t, k.rsa1, payload), ErrMalformed)
		}
	})
}

func TestCaseVariantClaimsIgnored(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	// "SUB" is not "sub": matching is case-sensitive, unlike encoding/json.
	mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), "sub", nil, "SUB", "admin")), ErrMissingClaim)
	got := mustVerify(t, v, signAT(t, k.rsa1, with(baseClaims(c), "Groups", []string{"admins"}, "groups", []string{"staff"})))
	if diff := cmp.Diff([]string{"staff"}, got.Groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}

func TestMissingRequiredClaimsRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	for _, tc := range []struct {
		kv   []any
		want error
	}{
		{[]any{"sub", nil}, ErrMissingClaim},
		{[]any{"sub", ""}, ErrMissingClaim},
		{[]any{"aud", nil}, ErrMissingClaim},
		{[]any{"aud", []string{}}, ErrMissingClaim},
		{[]any{"iat", nil}, ErrMissingClaim},
		{[]any{"iss", nil}, ErrIssuer},
	} {
		t.Run(fmt.Sprint(tc.kv...), func(t *testing.T) {
			mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), tc.kv...)), tc.want)
		})
	}
}

func TestMissingExpRejected(t *testing.T) {
	// go-jose's Claims.Validate lets a token without exp pass; gatehouse
	// requires it.
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), "exp", nil)), ErrMissingClaim)
}

func TestExpiredTokenRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c, func(o *Options) { o.CacheSize = -1 })
	now := c.Now()
	tok := func(exp time.Time) string {
		return signAT(t, k.rsa1, with(baseClaims(c), "exp", exp.Unix(), "iat", now.Add(-time.Hour).Unix()))
	}
	mustVerify(t, v, tok(now.Add(-DefaultLeeway+time.Second))) // inside the leeway
	mustFail(t, v, tok(now.Add(-DefaultLeeway)), ErrExpired)
	mustFail(t, v, tok(now.Add(-time.Hour)), ErrExpired)
	mustFail(t, v, tok(time.Unix(0, 0)), ErrExpired)

	// A token that was valid expires as the clock moves.
	live := tok(now.Add(time.Minute))
	mustVerify(t, v, live)
	c.Advance(time.Minute + DefaultLeeway)
	mustFail(t, v, live, ErrExpired)
}

func TestNotYetValidTokenRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	now := c.Now()
	mustVerify(t, v, signAT(t, k.rsa1, with(baseClaims(c), "nbf", now.Add(DefaultLeeway).Unix())))
	mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), "nbf", now.Add(DefaultLeeway+time.Second).Unix())), ErrNotYetValid)
	mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), "nbf", now.Add(time.Hour).Unix())), ErrNotYetValid)
}

func TestFutureIatRejected(t *testing.T) {
	// go-oidc does not check iat at all; gatehouse refuses a token issued in
	// the future beyond the leeway.
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	now := c.Now()
	mustVerify(t, v, signAT(t, k.rsa1, with(baseClaims(c), "iat", now.Add(DefaultLeeway).Unix())))
	mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), "iat", now.Add(DefaultLeeway+time.Second).Unix())), ErrNotYetValid)
	mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), "iat", now.Add(30*24*time.Hour).Unix())), ErrNotYetValid)
}

func TestStaleIatRejected(t *testing.T) {
	// A long-lived token (exp far away) is refused once iat is older than
	// MaxAge.
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c, func(o *Options) { o.MaxAge = time.Hour })
	now := c.Now()
	long := func(iat time.Time) string {
		return signAT(t, k.rsa1, with(baseClaims(c), "iat", iat.Unix(), "exp", now.Add(365*24*time.Hour).Unix()))
	}
	mustVerify(t, v, long(now.Add(-time.Hour)))
	mustFail(t, v, long(now.Add(-time.Hour-time.Second)), ErrExpired)

	// And a cached token stops being served at iat+MaxAge.
	tok := long(now.Add(-59 * time.Minute))
	mustVerify(t, v, tok)
	c.Advance(2 * time.Minute)
	mustFail(t, v, tok, ErrExpired)
}

func TestWrongAudienceRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	for _, aud := range []any{"api://other", []string{"gatehouse-client", "api://other"}, "API://GATEHOUSE", testAud + "/"} {
		t.Run(fmt.Sprint(aud), func(t *testing.T) {
			mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), "aud", aud)), ErrAudience)
		})
	}
}

func TestWrongIssuerRejected(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	for _, iss := range []string{testIss + "/", strings.ToUpper(testIss), "https://evil.example.test", "", " " + testIss} {
		t.Run(iss, func(t *testing.T) {
			mustFail(t, v, signAT(t, k.rsa1, with(baseClaims(c), "iss", iss)), ErrIssuer)
		})
	}
	if n := p.fetches.Load(); n != 0 {
		t.Errorf("an unknown issuer caused %d JWKS fetches, want 0", n)
	}
}

func TestCrossIssuerKeyRejected(t *testing.T) {
	// Two issuers: a token claiming issuer A, signed with issuer B's key
	// (whose kid A does not publish), is not verified with B's keys.
	k := keysOnce()
	c := newClock()
	pa, pb := newIDP(t, k.rsa1), newIDP(t, k.rsa2)
	v := newVerifier(t, pa, c, func(o *Options) {
		o.Issuers = append(o.Issuers, Issuer{Issuer: "https://b.example.test", JWKSURL: pb.url(), Audiences: []string{testAud}, Algorithms: []string{"RS256"}})
	})
	mustVerify(t, v, signAT(t, k.rsa2, with(baseClaims(c), "iss", "https://b.example.test")))
	mustFail(t, v, signAT(t, k.rsa2, baseClaims(c)), ErrUnknownKey)
}

func TestAlgorithmPinnedPerIssuer(t *testing.T) {
	// Issuer A pins ES256 only; RS256 is pinned for issuer B. An RS256 token
	// from A is refused even though RS256 is known to the Verifier.
	k := keysOnce()
	c := newClock()
	pa, pb := newIDP(t, k.rsa1, k.ec1), newIDP(t, k.rsa2)
	v := newVerifier(t, pa, c, func(o *Options) {
		o.Issuers[0].Algorithms = []string{"ES256"}
		o.Issuers = append(o.Issuers, Issuer{Issuer: "https://b.example.test", JWKSURL: pb.url(), Audiences: []string{testAud}, Algorithms: []string{"RS256"}})
	})
	mustVerify(t, v, signAT(t, k.ec1, baseClaims(c)))
	mustFail(t, v, signAT(t, k.rsa1, baseClaims(c)), ErrAlgorithm)
	mustFail(t, v, sign(t, k.rsa1, baseClaims(c), signOpts{alg: jose.PS256}), ErrAlgorithm)
}

func TestTokenTypeRule(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	for _, tc := range []struct {
		name string
		typ  string
		kv   []any
		want error // nil: accepted
	}{
		{"at+jwt", "at+jwt", nil, nil},
		{"application/at+jwt", "application/at+jwt", nil, nil},
		{"JWT", "JWT", nil, nil},
		{"jwt lower case", "jwt", nil, nil},
		{"application/jwt", "application/jwt", nil, nil},
		{"no typ", "", nil, nil},
		{"at+jwt with nonce: typ decides", "at+jwt", []any{"nonce", "n"}, nil},
		{"JWT with nonce", "JWT", []any{"nonce", "n"}, ErrTokenType},
		{"no typ with at_hash", "", []any{"at_hash", "h"}, ErrTokenType},
		{"no typ with c_hash", "", []any{"c_hash", "h"}, ErrTokenType},
		{"no typ with null nonce", "", []any{"nonce", map[string]any(nil)}, ErrTokenType},
		{"no typ with events", "", []any{"events", map[string]any{}}, ErrTokenType},
		{"at+jwt with events", "at+jwt", []any{"events", map[string]any{}}, ErrTokenType},
		{"logout+jwt", "logout+jwt", nil, ErrTokenType},
		{"secevent+jwt", "secevent+jwt", nil, ErrTokenType},
		{"dpop+jwt", "dpop+jwt", nil, ErrTokenType},
		{"id_token+jwt", "id_token+jwt", nil, ErrTokenType},
		{"at+jwt with a suffix", "at+jwtx", nil, ErrTokenType},
		{"application/ alone", "application/", nil, ErrTokenType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := sign(t, k.rsa1, with(baseClaims(c), tc.kv...), signOpts{typ: tc.typ})
			if tc.want == nil {
				mustVerify(t, v, tok)
			} else {
				mustFail(t, v, tok, tc.want)
			}
		})
	}
	t.Run("typ not a string", func(t *testing.T) {
		tok := sign(t, k.rsa1, baseClaims(c), signOpts{headers: map[jose.HeaderKey]any{"typ": 1}})
		mustFail(t, v, tok, ErrMalformed)
	})
}

func TestRequireAccessTokenType(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c, func(o *Options) { o.Issuers[0].RequireAccessTokenType = true })
	mustVerify(t, v, signAT(t, k.rsa1, baseClaims(c)))
	mustFail(t, v, sign(t, k.rsa1, baseClaims(c), signOpts{typ: "JWT"}), ErrTokenType)
	mustFail(t, v, sign(t, k.rsa1, baseClaims(c), signOpts{}), ErrTokenType)
}

func TestReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrTooLarge, "token-too-large"},
		{fmt.Errorf("%w: x", ErrMalformed), "token-malformed"},
		{ErrHeader, "token-forbidden-header"},
		{ErrAlgorithm, "token-algorithm"},
		{ErrTokenType, "token-type"},
		{ErrIssuer, "token-issuer"},
		{ErrUnknownKey, "token-unknown-key"},
		{fmt.Errorf("%w: %w", ErrJWKSUnavailable, errors.New("dial")), "jwks-unavailable"},
		{ErrSignature, "token-signature"},
		{ErrMissingClaim, "token-missing-claim"},
		{ErrExpired, "token-expired"},
		{ErrNotYetValid, "token-not-yet-valid"},
		{ErrAudience, "token-audience"},
		{context.Canceled, "jwks-unavailable"},
		{errors.New("other"), "token-invalid"},
	} {
		if got := Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestNewValidatesOptions(t *testing.T) {
	good := Issuer{Issuer: testIss, JWKSURL: "https://idp.example.test/jwks", Audiences: []string{testAud}, Algorithms: []string{"RS256"}}
	for _, tc := range []struct {
		name string
		opts Options
		want []string // each must appear in the error
	}{
		{"no issuers", Options{}, []string{"Issuers: at least one issuer is required"}},
		{"everything missing", Options{Issuers: []Issuer{{}}}, []string{
			"Issuers[0].Issuer: required", "Issuers[0].JWKSURL: required",
			"Issuers[0].Audiences: at least one", "Issuers[0].Algorithms: at least one",
		}},
		{"symmetric and none", Options{Issuers: []Issuer{{Issuer: testIss, JWKSURL: good.JWKSURL, Audiences: good.Audiences, Algorithms: []string{"HS256", "hs512", "none", "RS1", "RS256", "RS256"}}}}, []string{
			"Algorithms[0]: HS256 is symmetric", "Algorithms[1]: hs512 is symmetric", "Algorithms[2]: none is never accepted",
			`Algorithms[3]: unknown algorithm "RS1"`, "Algorithms[5]: RS256 is listed twice",
		}},
		{"plain http JWKS", Options{Issuers: []Issuer{{Issuer: testIss, JWKSURL: "http://idp.example.test/jwks", Audiences: good.Audiences, Algorithms: good.Algorithms}}}, []string{"JWKSURL"}},
		{"duplicate issuer", Options{Issuers: []Issuer{good, good}}, []string{"Issuers[1].Issuer: \"https://idp.example.test\" is configured twice"}},
		{"issuer also rejected", Options{Issuers: []Issuer{good}, RejectIssuers: []string{testIss}}, []string{"also in RejectIssuers"}},
		{"bad limits", Options{Issuers: []Issuer{good}, Leeway: time.Hour, MaxAge: -1, MaxTokenBytes: 1 << 20, MinRefetch: 2 * time.Hour}, []string{
			"Leeway: 1h0m0s is more than the maximum", "MaxAge: -1ns is negative", "MaxTokenBytes", "RefreshInterval: 1h0m0s is less than MinRefetch 2h0m0s",
		}},
		{"empty audience", Options{Issuers: []Issuer{{Issuer: testIss, JWKSURL: good.JWKSURL, Audiences: []string{""}, Algorithms: good.Algorithms}}}, []string{"Audiences[0]: empty audience"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	for _, u := range []string{"https://idp.example.test/jwks", "http://127.0.0.1:5556/keys", "http://[::1]/keys", "http://localhost/keys"} {
		g := good
		g.JWKSURL = u
		if _, err := New(Options{Issuers: []Issuer{g}}); err != nil {
			t.Errorf("New with JWKSURL %s: %v", u, err)
		}
	}
}
