package oidc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// These tests check the relying party's own checks — the ones go-oidc leaves
// to the caller — with tokens a real provider would never mint. The flows
// against real providers are in internal/app (built-in provider) and its
// e2e tests (Dex).

// testIssuer serves a discovery document and a JWKS, and mints tokens.
type testIssuer struct {
	srv      *httptest.Server
	userinfo string // the UserInfo response body
	key      *rsa.PrivateKey
	kid      string
	now      time.Time
	opts     ProviderOptions
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ti := &testIssuer{key: key, kid: "k1", now: time.Now()}
	mux := http.NewServeMux()
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 ti.srv.URL,
			"authorization_endpoint": ti.srv.URL + "/authorize",
			"token_endpoint":         ti.srv.URL + "/token",
			"jwks_uri":               ti.srv.URL + "/keys",
			"end_session_endpoint":   ti.srv.URL + "/logout",
			"userinfo_endpoint":      ti.srv.URL + "/userinfo",
			"authorization_response_iss_parameter_supported": true,
		})
	})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer at-1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(ti.userinfo))
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: ti.kid, Algorithm: "RS256", Use: "sig"},
		}})
	})
	ti.opts = ProviderOptions{Name: "test", Issuer: ti.srv.URL, ClientID: "gatehouse", Now: func() time.Time { return ti.now }}
	return ti
}

func (ti *testIssuer) provider(t *testing.T) *Provider {
	t.Helper()
	p, err := NewProvider(ti.opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (ti *testIssuer) sign(t *testing.T, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", ti.kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: ti.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (ti *testIssuer) idClaims() map[string]any {
	return map[string]any{
		"iss": ti.srv.URL, "sub": "u1", "aud": "gatehouse", "nonce": "n0nce",
		"iat": ti.now.Unix(), "exp": ti.now.Add(time.Hour).Unix(),
		"email": "u1@example.test", "email_verified": true,
		"realm_access": map[string]any{"roles": []any{"analysts", "staff"}},
	}
}

func TestIDTokenChecks(t *testing.T) {
	ti := newTestIssuer(t)
	ti.opts.GroupsClaim = "realm_access.roles"
	p := ti.provider(t)
	m, err := p.discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edit   func(c map[string]any)
		nonce  string
		reason string // "" means valid
	}{
		{"valid", func(map[string]any) {}, "n0nce", ""},
		{"NonceMismatch", func(map[string]any) {}, "other", "nonce"},
		{"NonceMissing", func(c map[string]any) { delete(c, "nonce") }, "n0nce", "nonce"},
		{"NoSub", func(c map[string]any) { delete(c, "sub") }, "n0nce", "sub"},
		{"NoIAT", func(c map[string]any) { delete(c, "iat") }, "n0nce", "iat"},
		{"IATInFuture", func(c map[string]any) { c["iat"] = ti.now.Add(time.Hour).Unix() }, "n0nce", "iat"},
		{"IATTooOld", func(c map[string]any) { c["iat"] = ti.now.Add(-time.Hour).Unix() }, "n0nce", "iat"},
		{"Expired", func(c map[string]any) { c["exp"] = ti.now.Add(-time.Minute).Unix() }, "n0nce", "expired"},
		{"WrongAudience", func(c map[string]any) { c["aud"] = "someone-else" }, "n0nce", "audience"},
		{"WrongIssuer", func(c map[string]any) { c["iss"] = "https://evil.example" }, "n0nce", "iss"},
		{"SeveralAudiencesWithoutAZP", func(c map[string]any) { c["aud"] = []string{"gatehouse", "other"} }, "n0nce", "azp"},
		{"SeveralAudiencesWithAZP", func(c map[string]any) {
			c["aud"] = []string{"gatehouse", "other"}
			c["azp"] = "gatehouse"
		}, "n0nce", ""},
		{"AZPOfAnotherClient", func(c map[string]any) { c["azp"] = "other" }, "n0nce", "azp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ti.idClaims()
			tc.edit(c)
			id, err := p.verifyIDToken(context.Background(), m, ti.sign(t, "JWT", c), tc.nonce, "", "")
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("valid token refused: %v", err)
				}
				if strings.Join(id.Groups, ",") != "analysts,staff" || !id.EmailVerified {
					t.Errorf("identity = %+v", id)
				}
				return
			}
			if !errors.Is(err, ErrIDToken) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v, want ErrIDToken about %s", err, tc.reason)
			}
		})
	}
}

func TestDuplicateClaimRefused(t *testing.T) {
	ti := newTestIssuer(t)
	p := ti.provider(t)
	m, err := p.discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// A payload with sub twice: encoding/json would take the last one.
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: ti.key}, (&jose.SignerOptions{}).WithHeader("kid", ti.kid))
	payload := `{"iss":"` + ti.srv.URL + `","sub":"u1","sub":"admin","aud":"gatehouse","nonce":"n","iat":` +
		itoa(ti.now.Unix()) + `,"exp":` + itoa(ti.now.Add(time.Hour).Unix()) + `}`
	obj, err := s.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := obj.CompactSerialize()
	if _, err := p.verifyIDToken(context.Background(), m, raw, "n", "", ""); err == nil {
		t.Fatal("token with a duplicate sub accepted")
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestIssuerParamMixUpRefused(t *testing.T) {
	ti := newTestIssuer(t)
	p := ti.provider(t)
	ctx := context.Background()
	if err := p.CheckIssuerParam(ctx, ti.srv.URL, true); err != nil {
		t.Errorf("own issuer refused: %v", err)
	}
	if err := p.CheckIssuerParam(ctx, "https://other-idp.example", true); err == nil {
		t.Error("another provider's iss accepted (mix-up)")
	}
	// The provider advertises the parameter, so it must be present.
	if err := p.CheckIssuerParam(ctx, "", false); err == nil {
		t.Error("missing iss accepted from a provider that sends it")
	}
}

func TestLogoutTokenChecks(t *testing.T) {
	ti := newTestIssuer(t)
	valid := func() map[string]any {
		return map[string]any{
			"iss": ti.srv.URL, "aud": "gatehouse", "sub": "u1", "sid": "s1",
			"iat": ti.now.Unix(), "exp": ti.now.Add(2 * time.Minute).Unix(), "jti": "j-" + time.Now().String(),
			"events": map[string]any{backchannelEvent: map[string]any{}},
		}
	}
	tests := []struct {
		name string
		typ  string
		edit func(c map[string]any)
		ok   bool
	}{
		{"valid", "logout+jwt", func(map[string]any) {}, true},
		{"NoTypLikeDex", "", func(map[string]any) {}, true},
		{"AccessTokenTyp", "at+jwt", func(map[string]any) {}, false},
		{"NoEvents", "logout+jwt", func(c map[string]any) { delete(c, "events") }, false},
		{"WrongEvent", "logout+jwt", func(c map[string]any) { c["events"] = map[string]any{"other": map[string]any{}} }, false},
		{"NonceIsAnIDToken", "logout+jwt", func(c map[string]any) { c["nonce"] = "n" }, false},
		{"NeitherSubNorSID", "logout+jwt", func(c map[string]any) { delete(c, "sub"); delete(c, "sid") }, false},
		{"SIDOnly", "logout+jwt", func(c map[string]any) { delete(c, "sub") }, true},
		{"WrongAudience", "logout+jwt", func(c map[string]any) { c["aud"] = "other" }, false},
		{"WrongIssuer", "logout+jwt", func(c map[string]any) { c["iss"] = "https://evil.example" }, false},
		{"OldIAT", "logout+jwt", func(c map[string]any) { c["iat"] = ti.now.Add(-time.Hour).Unix() }, false},
		{"Expired", "logout+jwt", func(c map[string]any) { c["exp"] = ti.now.Add(-time.Hour).Unix() }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ti.provider(t)
			c := valid()
			c["jti"] = tc.name
			tc.edit(c)
			req, err := p.VerifyLogoutToken(context.Background(), ti.sign(t, tc.typ, c))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && req.SID != "s1" {
				t.Errorf("request = %+v", req)
			}
		})
	}
	t.Run("ReplayedJTI", func(t *testing.T) {
		p := ti.provider(t)
		raw := ti.sign(t, "logout+jwt", valid())
		if _, err := p.VerifyLogoutToken(context.Background(), raw); err != nil {
			t.Fatal(err)
		}
		if _, err := p.VerifyLogoutToken(context.Background(), raw); err == nil {
			t.Fatal("replayed logout token accepted")
		}
	})
	t.Run("SignedByAnotherKey", func(t *testing.T) {
		p := ti.provider(t)
		other, _ := rsa.GenerateKey(rand.Reader, 2048)
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: other}, (&jose.SignerOptions{}).WithHeader("kid", ti.kid))
		raw, _ := jwt.Signed(s).Claims(valid()).Serialize()
		if _, err := p.VerifyLogoutToken(context.Background(), raw); err == nil {
			t.Fatal("forged logout token accepted")
		}
	})
}

func TestEndSessionURL(t *testing.T) {
	ti := newTestIssuer(t)
	p := ti.provider(t)
	u := p.EndSessionURL(context.Background(), "hint", "https://app.example/.gatehouse/logged-out", "")
	for _, want := range []string{ti.srv.URL + "/logout?", "id_token_hint=hint", "client_id=gatehouse", "post_logout_redirect_uri=https%3A%2F%2Fapp.example%2F.gatehouse%2Flogged-out"} {
		if !strings.Contains(u, want) {
			t.Errorf("end-session URL %q lacks %q", u, want)
		}
	}
}

func TestDiscoveryIssuerMismatchRefused(t *testing.T) {
	ti := newTestIssuer(t)
	ti.opts.Issuer = ti.srv.URL + "/" // the document names it without the slash
	p := ti.provider(t)
	if _, err := p.discover(context.Background()); !errors.Is(err, ErrDiscovery) {
		t.Fatalf("err = %v, want ErrDiscovery", err)
	}
}

func TestLookupClaimDottedPath(t *testing.T) {
	claims := map[string]any{
		"groups":                []any{"a"},
		"realm_access":          map[string]any{"roles": []any{"r1", "r2"}},
		"https://example/roles": "x",
	}
	for name, want := range map[string]string{"groups": "a", "realm_access.roles": "r1,r2", "https://example/roles": "x"} {
		v, ok := LookupClaim(claims, name)
		if !ok || strings.Join(stringList(v), ",") != want {
			t.Errorf("%s = %v, %v", name, v, ok)
		}
	}
	if _, ok := LookupClaim(claims, "realm_access.missing"); ok {
		t.Error("missing nested claim found")
	}
}

func TestUserInfoFetchedWhenGroupsMissing(t *testing.T) {
	ti := newTestIssuer(t)
	p := ti.provider(t)
	ctx := context.Background()
	m, err := p.discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := ti.idClaims()
	delete(c, "realm_access") // the default groups claim is "groups": absent
	tok := (&oauth2.Token{AccessToken: "at-1", TokenType: "Bearer", Expiry: ti.now.Add(time.Hour)})
	for _, tc := range []struct {
		name, body string
		ok         bool
		groups     string
	}{
		{"GroupsFromUserInfo", `{"sub":"u1","groups":["analysts"]}`, true, "analysts"},
		{"UserInfoForAnotherSubject", `{"sub":"admin","groups":["admins"]}`, false, ""},
		{"UserInfoWithDuplicateKeys", `{"sub":"u1","groups":["a"],"groups":["admins"]}`, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti.userinfo = tc.body
			id, err := p.verifyIDToken(ctx, m, ti.sign(t, "JWT", c), "n0nce", "", "")
			if err != nil {
				t.Fatal(err)
			}
			err = p.completeIdentity(ctx, m, id, tok)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && strings.Join(id.Groups, ",") != tc.groups {
				t.Errorf("groups = %v, want %s", id.Groups, tc.groups)
			}
			if !tc.ok && !errors.Is(err, ErrUserInfo) {
				t.Errorf("err = %v, want ErrUserInfo", err)
			}
		})
	}
}

func TestRefreshedIDTokenForAnotherSubjectRefused(t *testing.T) {
	ti := newTestIssuer(t)
	p := ti.provider(t)
	m, err := p.discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := ti.idClaims()
	delete(c, "nonce") // refreshed ID tokens carry none (OIDC Core §12.2)
	if _, err := p.verifyIDToken(context.Background(), m, ti.sign(t, "JWT", c), "", "u1", "refresh"); err != nil {
		t.Fatalf("refreshed token of the same subject refused: %v", err)
	}
	if _, err := p.verifyIDToken(context.Background(), m, ti.sign(t, "JWT", c), "", "someone-else", "refresh"); !errors.Is(err, ErrIDToken) {
		t.Fatalf("refreshed token of another subject: err = %v, want ErrIDToken", err)
	}
}
