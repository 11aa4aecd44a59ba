package assertion

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

func TestMintClaims(t *testing.T) {
	clk := newClock()
	k1, _, _ := keys(t)
	s := newSigner(t, Options{Keys: []Key{k1}, Now: clk.Now})
	const aud = "https://app.example.com"

	tok, exp, err := s.Mint(alice, aud)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify(tok, s.JWKS(), aud, clk.Now())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got, want := v.Header.Algorithm, "ES256"; got != want {
		t.Errorf("alg = %q, want %q", got, want)
	}
	if got, want := v.Header.KeyID, "k1"; got != want {
		t.Errorf("kid = %q, want %q", got, want)
	}
	now := clk.Now()
	want := map[string]any{
		"iss":    testIssuer,
		"aud":    aud,
		"sub":    "alice-123",
		"idp":    "https://idp.example.com",
		"email":  "alice@example.com",
		"groups": []any{"eng", "admins"},
		"iat":    float64(now.Unix()),
		"exp":    float64(now.Add(5 * time.Minute).Unix()),
		"jti":    v.Raw["jti"],
	}
	if diff := cmp.Diff(want, v.Raw); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if !exp.Equal(now.Add(5 * time.Minute)) {
		t.Errorf("returned expiry %v, want %v", exp, now.Add(5*time.Minute))
	}
	jti, err := base64.RawURLEncoding.DecodeString(v.Claims.ID)
	if err != nil || len(jti) != 16 {
		t.Errorf("jti %q: want 16 bytes of base64url, got %d bytes, err %v", v.Claims.ID, len(jti), err)
	}
}

func TestMintEmptyGroupsIsArrayAndEmailOmitted(t *testing.T) {
	s := newSigner(t, Options{})
	tok, _, err := s.Mint(Identity{Issuer: "https://idp.example.com", Subject: "bob"}, "https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	payload := decodePayload(t, tok)
	if !strings.Contains(payload, `"groups":[]`) {
		t.Errorf("payload %s: want groups as an empty array", payload)
	}
	if strings.Contains(payload, `"email"`) {
		t.Errorf("payload %s: want no email claim", payload)
	}
}

func decodePayload(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExpiryCappedAtFiveMinutes(t *testing.T) {
	k1, _, _ := keys(t)
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		wantTTL time.Duration
		wantErr bool
	}{
		{name: "default", ttl: 0, wantTTL: 5 * time.Minute},
		{name: "five-minutes", ttl: 5 * time.Minute, wantTTL: 5 * time.Minute},
		{name: "one-minute", ttl: time.Minute, wantTTL: time.Minute},
		{name: "over-cap", ttl: 5*time.Minute + time.Second, wantErr: true},
		{name: "one-hour", ttl: time.Hour, wantErr: true},
		{name: "too-short", ttl: time.Second, wantErr: true},
		{name: "negative", ttl: -time.Minute, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			s, err := New(Options{Issuer: testIssuer, Keys: []Key{k1}, TTL: tc.ttl, Now: clk.Now})
			if tc.wantErr {
				if err == nil {
					t.Fatal("New succeeded, want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, _, err := s.Mint(alice, "https://app.example.com")
			if err != nil {
				t.Fatal(err)
			}
			v, err := verify(tok, s.JWKS(), "https://app.example.com", clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			life := v.Claims.Expiry.Time().Sub(v.Claims.IssuedAt.Time())
			if life != tc.wantTTL || life > 5*time.Minute {
				t.Errorf("exp - iat = %v, want %v (≤ 5m)", life, tc.wantTTL)
			}
		})
	}
}

func TestJTIUnique(t *testing.T) {
	s := newSigner(t, Options{Now: newClock().Now})
	seen := make(map[string]bool, 1000)
	for range 1000 {
		tok, _, err := s.Mint(alice, "https://app.example.com")
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			JTI string `json:"jti"`
		}
		if err := json.Unmarshal([]byte(decodePayload(t, tok)), &c); err != nil {
			t.Fatal(err)
		}
		if len(c.JTI) != 22 || seen[c.JTI] {
			t.Fatalf("jti %q: repeated or not 128 bits", c.JTI)
		}
		seen[c.JTI] = true
	}
}

func TestFixedClockDeterminism(t *testing.T) {
	clk := newClock()
	clk.Advance(789 * time.Millisecond) // sub-second part must not leak into iat/exp
	s := newSigner(t, Options{Now: clk.Now, TTL: 2 * time.Minute})
	strip := func(tok string) (string, string) {
		var m map[string]any
		if err := json.Unmarshal([]byte(decodePayload(t, tok)), &m); err != nil {
			t.Fatal(err)
		}
		jti := m["jti"].(string)
		delete(m, "jti")
		b, _ := json.Marshal(m)
		return string(b), jti
	}
	tok1, exp1, err := s.Mint(alice, "https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	tok2, exp2, err := s.Mint(alice, "https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if tok1 == tok2 {
		t.Fatal("two mints gave the same token")
	}
	p1, jti1 := strip(tok1)
	p2, jti2 := strip(tok2)
	if p1 != p2 {
		t.Errorf("payloads differ beyond jti:\n%s\n%s", p1, p2)
	}
	if jti1 == jti2 {
		t.Error("jti repeated")
	}
	if h1, h2 := strings.Split(tok1, ".")[0], strings.Split(tok2, ".")[0]; h1 != h2 {
		t.Errorf("headers differ: %s vs %s", h1, h2)
	}
	wantExp := time.Date(2026, 11, 28, 12, 2, 0, 0, time.UTC)
	if !exp1.Equal(wantExp) || !exp2.Equal(wantExp) {
		t.Errorf("expiries %v, %v; want %v", exp1, exp2, wantExp)
	}
	want := `{"aud":"https://app.example.com","email":"alice@example.com","exp":1795867320,"groups":["eng","admins"],"iat":1795867200,"idp":"https://idp.example.com","iss":"https://auth.example.com","sub":"alice-123"}`
	if p1 != want {
		t.Errorf("payload\n got %s\nwant %s", p1, want)
	}
}

func TestAssertionHeader(t *testing.T) {
	s := newSigner(t, Options{})
	tok, _, err := s.Mint(alice, "https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"alg": "ES256", "kid": "k1", "typ": "gatehouse-assertion+jwt"}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
}

func TestAssertionRejectedForOtherAudience(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now})
	tok, _, err := s.Mint(alice, "https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(tok, s.JWKS(), "https://other.example.com", clk.Now()); !errors.Is(err, jwt.ErrInvalidAudience) {
		t.Errorf("verify at another origin: err = %v, want ErrInvalidAudience", err)
	}
	clk.Advance(5*time.Minute + time.Second)
	if _, err := verify(tok, s.JWKS(), "https://app.example.com", clk.Now()); !errors.Is(err, jwt.ErrExpired) {
		t.Errorf("verify after exp: err = %v, want ErrExpired", err)
	}
}

func TestTamperedAssertionRejected(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now})
	tok, _, err := s.Mint(alice, "https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	p := strings.Replace(decodePayload(t, tok), `"eng"`, `"ops"`, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(p))
	if _, err := verify(strings.Join(parts, "."), s.JWKS(), "https://app.example.com", clk.Now()); err == nil {
		t.Error("tampered assertion verified")
	}
}

func TestRotation(t *testing.T) {
	clk := newClock()
	k1, k2, _ := keys(t)
	const aud = "https://app.example.com"

	// Before: only k1.
	s1 := newSigner(t, Options{Keys: []Key{k1}, Now: clk.Now})
	old, _, err := s1.Mint(alice, aud)
	if err != nil {
		t.Fatal(err)
	}

	// Step 1: k2 published second; k1 still signs.
	s2 := newSigner(t, Options{Keys: []Key{k1, k2}, Now: clk.Now})
	if s2.KeyID() != "k1" {
		t.Errorf("step 1 signs with %q, want k1", s2.KeyID())
	}

	// Step 2: k2 first; k1 still published, so old tokens verify.
	s3 := newSigner(t, Options{Keys: []Key{k2, k1}, Now: clk.Now})
	if _, err := verify(old, s3.JWKS(), aud, clk.Now()); err != nil {
		t.Errorf("k1 token with k2 first in the published set: %v", err)
	}
	tok, _, err := s3.Mint(alice, aud)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify(tok, s3.JWKS(), aud, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if v.Header.KeyID != "k2" {
		t.Errorf("step 2 kid = %q, want k2", v.Header.KeyID)
	}
	// An app that still holds the step-1 JWKS verifies the new token too.
	if _, err := verify(tok, s2.JWKS(), aud, clk.Now()); err != nil {
		t.Errorf("k2 token with the step-1 JWKS: %v", err)
	}

	// Step 3: k1 removed; its tokens no longer verify, k2's do.
	s4 := newSigner(t, Options{Keys: []Key{k2}, Now: clk.Now})
	if _, err := verify(old, s4.JWKS(), aud, clk.Now()); err == nil {
		t.Error("k1 token verified after k1 was removed")
	}
	if _, err := verify(tok, s4.JWKS(), aud, clk.Now()); err != nil {
		t.Errorf("k2 token after k1 removed: %v", err)
	}
}

func TestJWKSHasNoPrivateKey(t *testing.T) {
	k1, k2, _ := keys(t)
	s := newSigner(t, Options{Keys: []Key{k1, k2}})
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want 2", len(set.Keys))
	}
	for i, k := range set.Keys {
		if _, ok := k["d"]; ok {
			t.Errorf("key %d carries the private d", i)
		}
		names := make([]string, 0, len(k))
		for n := range k {
			names = append(names, n)
		}
		if diff := cmp.Diff([]string{"alg", "crv", "kid", "kty", "use", "x", "y"}, names, sortStrings); diff != "" {
			t.Errorf("key %d members (-want +got):\n%s", i, diff)
		}
		for n, want := range map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": []string{"k1", "k2"}[i]} {
			if k[n] != want {
				t.Errorf("key %d %s = %v, want %q", i, n, k[n], want)
			}
		}
	}
	// JWKS hands out a copy.
	b := s.JWKS()
	b[0] = 'X'
	if s.JWKS()[0] != '{' {
		t.Error("JWKS returned the internal slice")
	}
}

var sortStrings = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestServeJWKS(t *testing.T) {
	s := newSigner(t, Options{})
	for _, tc := range []struct {
		method   string
		want     int
		wantBody bool
	}{
		{http.MethodGet, http.StatusOK, true},
		{http.MethodHead, http.StatusOK, false},
		{http.MethodPost, http.StatusMethodNotAllowed, false},
	} {
		t.Run(tc.method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			http.HandlerFunc(s.ServeJWKS).ServeHTTP(rec, httptest.NewRequest(tc.method, JWKSPath, nil))
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if tc.want != http.StatusOK {
				return
			}
			for h, want := range map[string]string{
				"Content-Type":  "application/jwk-set+json",
				"Cache-Control": "public, max-age=300",
			} {
				if got := rec.Header().Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
			if got := rec.Body.String(); tc.wantBody != (got != "") || (tc.wantBody && got != string(s.JWKS())) {
				t.Errorf("body = %q", got)
			}
		})
	}
}

func TestNewCollectsEveryProblem(t *testing.T) {
	k1, _, _ := keys(t)
	_, err := New(Options{
		Issuer: "ftp://auth.example.com",
		Keys:   []Key{k1, k1, {ID: "", Private: nil}},
		TTL:    time.Hour,
	})
	if err == nil {
		t.Fatal("New succeeded")
	}
	for _, want := range []string{"Issuer:", "TTL:", "Keys[1]: duplicate key ID", "Keys[2]: key ID is empty", "Keys[2]: private key is missing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestNewRejectsBadIssuer(t *testing.T) {
	k1, _, _ := keys(t)
	for _, iss := range []string{"", "auth.example.com", "https://", "https://u:p@auth.example.com", "https://auth.example.com/?x=1", "https://auth.example.com/#f", "javascript:alert(1)"} {
		t.Run(iss, func(t *testing.T) {
			if _, err := New(Options{Issuer: iss, Keys: []Key{k1}}); err == nil {
				t.Errorf("New accepted issuer %q", iss)
			}
		})
	}
	if _, err := New(Options{Issuer: "https://example.com/gatehouse", Keys: []Key{k1}}); err != nil {
		t.Errorf("issuer with a path: %v", err)
	}
}

func TestMintRejectsNonOriginAudience(t *testing.T) {
	s := newSigner(t, Options{})
	for _, aud := range []string{"", "app.example.com", "https://app.example.com/", "https://app.example.com/path",
		"https://APP.example.com", "HTTPS://app.example.com", "https://app.example.com?x", "https://u@app.example.com",
		"https://app.example.com#f", "ftp://app.example.com", "https://"} {
		t.Run(aud, func(t *testing.T) {
			if _, _, err := s.Mint(alice, aud); err == nil {
				t.Errorf("Mint accepted audience %q", aud)
			}
		})
	}
	for _, aud := range []string{"https://app.example.com", "http://localhost:8080", "https://[::1]:8443"} {
		if _, _, err := s.Mint(alice, aud); err != nil {
			t.Errorf("Mint(%q): %v", aud, err)
		}
	}
}

func TestMintRequiresIssuerAndSubject(t *testing.T) {
	s := newSigner(t, Options{})
	for name, id := range map[string]Identity{
		"no-subject": {Issuer: "https://idp.example.com"},
		"no-issuer":  {Subject: "alice"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := s.Mint(id, "https://app.example.com"); err == nil {
				t.Error("Mint succeeded")
			}
			if _, _, err := s.Get("sess", id, "https://app.example.com"); err == nil {
				t.Error("Get succeeded")
			}
		})
	}
}
