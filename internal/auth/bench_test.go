package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-proxy/gatehouse/internal/assertion"
	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/oidc"
	"github.com/gatehouse-proxy/gatehouse/internal/policy"
	"github.com/gatehouse-proxy/gatehouse/internal/session"
	"github.com/gatehouse-proxy/gatehouse/internal/token"
)

const (
	benchHost     = "app.example.test"
	benchAudience = "api://gatehouse-bench"
	benchProvider = "corp"
)

var (
	sinkOutcome *auth.Outcome
	sinkBool    bool
)

// benchGate is a gate with one provider, a cookie store, a bearer issuer and
// an assertion signer, and the route the benchmarks check: group staff
// required, as bench/gatehouse.yaml's protected route.
type benchGate struct {
	route  *auth.Route
	cookie string // the session cookie, as the Cookie header carries it
	bearer string // a valid access token
}

// newBenchGate builds the gate against an httptest server on 127.0.0.1 that
// serves the issuer's OpenID discovery document and JWKS (the provider and
// the bearer issuer are the same server). Nothing is fetched until a
// benchmark first needs it; the warm-up call in each benchmark does that.
func newBenchGate(b *testing.B) *benchGate {
	b.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: key, KeyID: "bench-1", Algorithm: string(jose.RS256), Use: "sig"}
	var issuer string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                issuer,
			"authorization_endpoint":                issuer + "/authorize",
			"token_endpoint":                        issuer + "/token",
			"jwks_uri":                              issuer + "/jwks.json",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}})
	})
	srv := httptest.NewServer(mux) // 127.0.0.1:0
	b.Cleanup(srv.Close)
	issuer = srv.URL

	secret := make([]byte, 32)
	rand.Read(secret)
	codec, err := session.NewCodec([]session.Key{{ID: "k1", Secret: secret}})
	if err != nil {
		b.Fatal(err)
	}
	revocations, err := session.NewRevocationList(session.RevocationOptions{})
	if err != nil {
		b.Fatal(err)
	}
	store, err := session.NewCookieStore(session.CookieOptions{Codec: codec, Name: "gh_session", Revocations: revocations})
	if err != nil {
		b.Fatal(err)
	}
	akey, err := assertion.GenerateKey("a1")
	if err != nil {
		b.Fatal(err)
	}
	signer, err := assertion.New(assertion.Options{Issuer: "https://" + benchHost, Keys: []assertion.Key{akey}})
	if err != nil {
		b.Fatal(err)
	}
	verifier, err := token.New(token.Options{Issuers: []token.Issuer{{
		Issuer: issuer, JWKSURL: issuer + "/jwks.json", Audiences: []string{benchAudience}, Algorithms: []string{"RS256"},
	}}})
	if err != nil {
		b.Fatal(err)
	}
	provider, err := oidc.NewProvider(oidc.ProviderOptions{Name: benchProvider, Issuer: issuer, ClientID: "gatehouse"})
	if err != nil {
		b.Fatal(err)
	}
	g, err := auth.New(auth.Options{
		PublicURL: &url.URL{Scheme: "https", Host: benchHost},
		Providers: []*oidc.Provider{provider},
		Store:     store,
		Codec:     codec,
		Bearer:    verifier,
		Signer:    signer,
		Headers: auth.Headers{
			User: "X-Gatehouse-User", Email: "X-Gatehouse-Email",
			Groups: "X-Gatehouse-Groups", Assertion: "X-Gatehouse-Assertion",
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	pol, err := policy.Compile(policy.Options{Allow: []policy.Rule{{Name: "staff", Groups: []string{"staff"}}}})
	if err != nil {
		b.Fatal(err)
	}
	rt, err := g.Route(auth.RouteOptions{Name: "protected", Policy: pol})
	if err != nil {
		b.Fatal(err)
	}

	groups := []string{"staff", "analysts", "engineering", "oncall"}
	now := time.Now().Truncate(time.Second)
	sealed, err := store.Save(context.Background(), &session.Session{
		ID: session.NewID(), Issuer: issuer, Subject: "user-0001", Provider: benchProvider,
		Email: "ada@example.test", Name: "Ada", Groups: groups, CreatedAt: now, LastSeen: now,
		Extra: map[string]string{"u": "ada", "ev": "1"},
	}, now)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jwk},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		b.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(map[string]any{
		"iss": issuer, "sub": "user-0001", "aud": benchAudience,
		"iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(),
		"email": "ada@example.test", "email_verified": true, "preferred_username": "ada", "groups": groups,
	}).Serialize()
	if err != nil {
		b.Fatal(err)
	}
	// Over https the cookie is sent as __Host-gh_session.
	return &benchGate{route: rt, cookie: session.CookieName("gh_session", true) + "=" + sealed, bearer: raw}
}

// checkRequest is the request a browser or API client sends to the route.
func (bg *benchGate) checkRequest(cookie, authorization string) *auth.Request {
	return &auth.Request{
		Method: http.MethodGet, Host: benchHost, Path: "/hello",
		Source: netip.MustParseAddr("192.0.2.10"), Cookie: cookie, Authorization: authorization,
	}
}

// benchCheck measures Route.Check on req, after one call that must end
// with wantStatus (0: allowed) and fills the caches (JWKS, discovery, the
// verified-token cache and the assertion cache), as a running gatehouse
// has them after its first request.
func benchCheck(b *testing.B, rt *auth.Route, req *auth.Request, wantStatus int) {
	ctx := context.Background()
	out := rt.Check(ctx, req)
	if out.Allow != (wantStatus == 0) || (wantStatus != 0 && out.Status != wantStatus) {
		b.Fatalf("warm-up: allow=%v status=%d reason=%s, want status %d", out.Allow, out.Status, out.Reason, wantStatus)
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkOutcome = rt.Check(ctx, req)
	}
}

// BenchmarkCheckSession is the per-request decision for a signed-in
// browser: open the sealed session cookie, apply the policy, build the
// identity headers and take the signed assertion from its cache.
func BenchmarkCheckSession(b *testing.B) {
	bg := newBenchGate(b)
	benchCheck(b, bg.route, bg.checkRequest(bg.cookie, ""), 0)
}

// BenchmarkCheckBearer is the same for an API client with a JWT access
// token that gatehouse has verified before (the verified-token cache: a
// SHA-256 and a map lookup instead of an RSA verification).
func BenchmarkCheckBearer(b *testing.B) {
	bg := newBenchGate(b)
	benchCheck(b, bg.route, bg.checkRequest("", "Bearer "+bg.bearer), 0)
}

// BenchmarkCheckAnonymous is a browser without a session: a new login flow
// (state, nonce, PKCE verifier), its sealed cookie and the redirect.
func BenchmarkCheckAnonymous(b *testing.B) {
	bg := newBenchGate(b)
	benchCheck(b, bg.route, bg.checkRequest("", ""), http.StatusFound)
}

// benchAdmit measures Route.Admit, the proxy's guard, on a request with
// the given header: Check plus setting the identity headers on the
// outbound request and removing gatehouse's credentials from it. The
// request's header map is cleared and refilled each iteration, which
// allocates nothing (the map keeps its buckets).
func benchAdmit(b *testing.B, rt *auth.Route, name, value string) {
	r := httptest.NewRequest(http.MethodGet, "https://"+benchHost+"/hello", nil)
	w := httptest.NewRecorder()
	vals := []string{value}
	reset := func() {
		clear(r.Header)
		r.Header[name] = vals
	}
	reset()
	if rt.Admit(w, r, benchHost, "/hello") == nil {
		b.Fatalf("warm-up: not admitted: %d %s", w.Code, w.Header().Get("Location"))
	}
	if r.Header.Get("X-Gatehouse-Assertion") == "" {
		b.Fatal("warm-up: no assertion set upstream")
	}
	b.ReportAllocs()
	for b.Loop() {
		reset()
		sinkBool = rt.Admit(w, r, benchHost, "/hello") != nil
	}
}

func BenchmarkAdmitSession(b *testing.B) {
	bg := newBenchGate(b)
	benchAdmit(b, bg.route, "Cookie", bg.cookie)
}

func BenchmarkAdmitBearer(b *testing.B) {
	bg := newBenchGate(b)
	benchAdmit(b, bg.route, "Authorization", "Bearer "+bg.bearer)
}
