package app_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-proxy/gatehouse/internal/idp"
	"github.com/gatehouse-proxy/gatehouse/internal/testenv"
)

// identityGatehouse is gatehouse with the built-in provider and the demo
// users in front of an echo upstream, on a port chosen before start (the
// public URL names it).
type identityGatehouse struct {
	*gatehouse
	origin string
}

// startBuiltinGatehouse starts gatehouse with the built-in provider and the
// demo users on a public port chosen before start, its origin the public
// URL. identityExtra is more identity settings (indented 2 spaces), or "";
// upstreamsAndRoutesYAML is the rest of the configuration (top-level
// upstreams and routes).
func startBuiltinGatehouse(t *testing.T, identityExtra, upstreamsAndRoutesYAML string) *identityGatehouse {
	t.Helper()
	port := testenv.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	yaml := fmt.Sprintf(`
listeners:
  - name: public
    address: 127.0.0.1:%d
public_url: %s
admin: {address: 127.0.0.1:0}
identity:
  builtin: {demo_users: true}
%s
`, port, origin, identityExtra) + upstreamsAndRoutesYAML
	return &identityGatehouse{gatehouse: start(t, yaml), origin: origin}
}

func startIdentity(t *testing.T, extra string) *identityGatehouse {
	t.Helper()
	up := newEcho(t)
	return startBuiltinGatehouse(t, extra, fmt.Sprintf(`
upstreams:
  app: {targets: [%s]}
routes:
  - name: analytics
    path: /analytics
    upstream: app
    policy:
      allow: [{name: analysts, groups: [analysts]}]
  - name: api
    path: /api
    upstream: app
    api: true
    policy:
      allow: [{name: signed-in, authenticated: true}]
  - name: app
    path: /
    upstream: app
    identity_headers: {X-Display-Name: name}
    policy:
      public: [/public/]
      allow: [{name: signed-in, authenticated: true}]
`, up.URL))
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so each step can be checked.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:           jar,
		Timeout:       ioTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// signIn opens path, is sent to the built-in provider, signs in and
// follows the callback back to path. It returns the callback URL.
func (g *identityGatehouse) signIn(t *testing.T, c *http.Client, path, user, password string) *url.URL {
	t.Helper()
	_, cb := signInThrough(t, c, g.origin, path, g.origin+"/.gatehouse/idp/", user, password)
	return cb
}

// loginTimeout bounds one browserless sign-in at a provider (bcrypt
// included).
const loginTimeout = 15 * time.Second

// signInThrough opens origin+path with c, expects a redirect to a URL
// starting with idp, signs in there as user (testenv.Login), and follows
// gatehouse's callback back to path. It returns the authorization request
// URL and the callback URL.
func signInThrough(t *testing.T, c *http.Client, origin, path, idp, user, password string) (authURL, callback *url.URL) {
	t.Helper()
	resp := fetch(t, c, origin+path, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: status %d, want 302 to sign in", path, resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, idp) {
		t.Fatalf("redirected to %q, want the provider at %s", loc, idp)
	}
	authURL, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), loginTimeout)
	defer cancel()
	callback, err = testenv.Login(ctx, c, loc, user, password, origin+"/.gatehouse/callback")
	if err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	resp = fetch(t, c, callback.String(), nil)
	if resp.StatusCode != http.StatusSeeOther {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("callback: status %d, want 303; body:\n%s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Location"); got != origin+path {
		t.Fatalf("callback redirects to %q, want %q", got, origin+path)
	}
	return authURL, callback
}

// sessionCookie returns the value of the gh_session cookie in c's jar for
// origin.
func sessionCookie(t *testing.T, c *http.Client, origin string) string {
	t.Helper()
	u, _ := url.Parse(origin)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "gh_session" {
			return ck.Value
		}
	}
	t.Fatal("no gh_session cookie in the jar")
	return ""
}

func fetch(t *testing.T, c *http.Client, u string, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

func TestBuiltinSignInReachesUpstreamWithIdentity(t *testing.T) {
	g := startIdentity(t, "")
	c := browser(t)
	g.signIn(t, c, "/hello?x=1", "alice", "wonderland")

	e := decodeEcho(t, fetch(t, c, g.origin+"/hello?x=1", http.Header{
		"X-Gatehouse-User": {"mallory"}, // forged: replaced
	}))
	if got := e.Header.Get("X-Gatehouse-User"); got != "alice" {
		t.Errorf("X-Gatehouse-User = %q, want alice", got)
	}
	if got := e.Header.Get("X-Gatehouse-Email"); got != "alice@example.test" {
		t.Errorf("X-Gatehouse-Email = %q", got)
	}
	if got := e.Header.Get("X-Gatehouse-Groups"); got != "admins,analysts" {
		t.Errorf("X-Gatehouse-Groups = %q", got)
	}
	if got := e.Header.Get("X-Display-Name"); got != "Alice" {
		t.Errorf("X-Display-Name = %q, want Alice (claim name)", got)
	}
	if got := e.Header.Get("Cookie"); strings.Contains(got, "gh_") {
		t.Errorf("upstream received gatehouse cookies: %q", got)
	}
	// The assertion verifies with gatehouse's published keys.
	claims := verifyAssertion(t, g.origin, e.Header.Get("X-Gatehouse-Assertion"))
	if claims["iss"] != g.origin || claims["aud"] != g.origin || claims["email"] != "alice@example.test" {
		t.Errorf("assertion claims = %v", claims)
	}

	// /.gatehouse/me shows the identity and never a token.
	resp := fetch(t, c, g.origin+"/.gatehouse/me", http.Header{"Accept": {"application/json"}})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"email":"alice@example.test"`) {
		t.Errorf("/.gatehouse/me: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "eyJ") { // every JWT starts so
		t.Errorf("/.gatehouse/me discloses a token: %s", body)
	}
	recs := g.records()
	var allowed int
	for _, r := range recs {
		if r.Path == "/hello" && r.Decision == "allow" && r.Status == 200 {
			allowed++
			if r.Auth != "session" || r.Email != "alice@example.test" || r.Rule != "signed-in" {
				t.Errorf("audit record = %+v", r)
			}
		}
	}
	if allowed != 1 {
		t.Errorf("%d allowed /hello records, want 1", allowed)
	}
}

func verifyAssertion(t *testing.T, origin, raw string) map[string]any {
	t.Helper()
	if raw == "" {
		t.Fatal("no assertion header")
	}
	resp := fetch(t, &http.Client{Timeout: ioTimeout}, origin+"/.well-known/gatehouse/jwks.json", nil)
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := tok.Claims(set, &claims); err != nil {
		t.Fatalf("assertion does not verify with the JWKS: %v", err)
	}
	return claims
}

func TestGroupDeniedShowsReason(t *testing.T) {
	g := startIdentity(t, "")
	c := browser(t)
	g.signIn(t, c, "/", "bob", "builder")
	resp := fetch(t, c, g.origin+"/analytics/report", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob on /analytics: %d, want 403", resp.StatusCode)
	}
	for _, want := range []string{"group-denied", "analysts", "bob@example.test"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("denied page lacks %q:\n%s", want, body)
		}
	}
	// alice may.
	c2 := browser(t)
	g.signIn(t, c2, "/analytics/report", "alice", "wonderland")
	decodeEcho(t, fetch(t, c2, g.origin+"/analytics/report", nil))
}

func TestPublicPathNeedsNoSignIn(t *testing.T) {
	g := startIdentity(t, "")
	e := decodeEcho(t, fetch(t, browser(t), g.origin+"/public/logo.png", nil))
	if e.Header.Get("X-Gatehouse-User") != "" {
		t.Error("anonymous request got an identity header")
	}
}

func TestAPIRequestWithoutSessionGets401(t *testing.T) {
	g := startIdentity(t, "")
	c := browser(t)
	for _, tc := range []struct {
		name, path string
		hdr        http.Header
	}{
		{"api route", "/api/things", nil},
		{"json accept", "/x", http.Header{"Accept": {"application/json"}}},
		{"fetch", "/x", http.Header{"Sec-Fetch-Mode": {"cors"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := fetch(t, c, g.origin+tc.path, tc.hdr)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestReplayedStateRefused(t *testing.T) {
	g := startIdentity(t, "")
	c := browser(t)
	cb := g.signIn(t, c, "/", "alice", "wonderland")
	// The same callback again, in the same browser (the flow cookie is
	// gone) and in another one (it never had it).
	for _, client := range []*http.Client{c, browser(t)} {
		resp := fetch(t, client, cb.String(), nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("replayed callback: %d, want 400", resp.StatusCode)
		}
	}
}

func TestTamperedSessionCookieRefused(t *testing.T) {
	g := startIdentity(t, "")
	c := browser(t)
	g.signIn(t, c, "/", "alice", "wonderland")
	value := sessionCookie(t, c, g.origin)
	for name, v := range map[string]string{
		"flipped":   value[:len(value)-2] + flip(value[len(value)-2]) + value[len(value)-1:],
		"truncated": value[:len(value)/2],
	} {
		t.Run(name, func(t *testing.T) {
			resp := fetch(t, &http.Client{Timeout: ioTimeout, CheckRedirect: noFollow}, g.origin+"/", http.Header{"Cookie": {"gh_session=" + v}})
			if resp.StatusCode != http.StatusFound {
				t.Errorf("status %d, want 302 to sign in", resp.StatusCode)
			}
		})
	}
	bad := 0
	for _, r := range g.records() {
		if r.Decision == "redirect" && r.Reason == "bad-session" {
			bad++
		}
	}
	if bad != 2 {
		t.Errorf("%d audit records with reason bad-session, want 2", bad)
	}
}

func noFollow(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}

func TestCrossSiteLogoutRefused(t *testing.T) {
	g := startIdentity(t, "")
	c := browser(t)
	g.signIn(t, c, "/", "alice", "wonderland")
	post := func(hdr http.Header) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, g.origin+"/.gatehouse/logout", nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post(http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site logout: %d, want 403", resp.StatusCode)
	}
	decodeEcho(t, fetch(t, c, g.origin+"/still-signed-in", nil))

	// A same-origin logout ends the session, even for a copy of the cookie.
	u, _ := url.Parse(g.origin)
	old := c.Jar.Cookies(u)
	resp := post(http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {g.origin}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d, want 303", resp.StatusCode)
	}
	replay := browser(t)
	replay.Jar.SetCookies(u, old)
	if resp := fetch(t, replay, g.origin+"/", nil); resp.StatusCode != http.StatusFound {
		t.Errorf("session cookie kept after logout: %d, want 302 to sign in", resp.StatusCode)
	}
}

func TestRefreshUpdatesGroups(t *testing.T) {
	// refresh_before equal to the provider's access token lifetime makes
	// every request refresh.
	g := startIdentity(t, "  session: {refresh_before: 5m}")
	c := browser(t)
	g.signIn(t, c, "/", "bob", "builder")
	if resp := fetch(t, c, g.origin+"/analytics/", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob before the change: %d, want 403", resp.StatusCode)
	}
	b, err := os.ReadFile("../idp/demo_users.yaml")
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "groups: [staff]", "groups: [staff, analysts]", 1)
	users, err := idp.ParseUsers("changed.yaml", []byte(changed))
	if err != nil {
		t.Fatal(err)
	}
	g.app.BuiltinProvider().SetUsers(users)
	e := decodeEcho(t, fetch(t, c, g.origin+"/analytics/", nil))
	if got := e.Header.Get("X-Gatehouse-Groups"); got != "staff,analysts" {
		t.Errorf("groups after refresh = %q", got)
	}
}

func TestBackchannelLogoutRevokesLiveSession(t *testing.T) {
	g := startIdentity(t, "")
	c := browser(t)
	g.signIn(t, c, "/", "alice", "wonderland")
	decodeEcho(t, fetch(t, c, g.origin+"/", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.app.BuiltinProvider().EndSessions(ctx, idp.SubjectFor("alice")); err != nil {
		t.Fatalf("EndSessions: %v", err)
	}
	if resp := fetch(t, c, g.origin+"/", nil); resp.StatusCode != http.StatusFound {
		t.Errorf("after back-channel logout: %d, want 302 to sign in", resp.StatusCode)
	}
}

func TestAssertionRefusedAsBearer(t *testing.T) {
	g := startIdentity(t, `  bearer:
    - issuer: http://127.0.0.1:1/unused
      jwks_url: http://127.0.0.1:1/jwks
      audiences: [api]`)
	c := browser(t)
	g.signIn(t, c, "/", "alice", "wonderland")
	a := decodeEcho(t, fetch(t, c, g.origin+"/", nil)).Header.Get("X-Gatehouse-Assertion")
	resp := fetch(t, &http.Client{Timeout: ioTimeout}, g.origin+"/api/x", http.Header{"Authorization": {"Bearer " + a}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("assertion as bearer: %d, want 401", resp.StatusCode)
	}
	if !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
	}
}

func TestConcurrentRefreshKeepsSession(t *testing.T) {
	// Every request refreshes; the built-in provider rotates refresh tokens
	// and revokes the whole grant when a rotated one is reused, so a second
	// refresh with the same token would end the session.
	g := startIdentity(t, "  session: {refresh_before: 5m}")
	c := browser(t)
	g.signIn(t, c, "/", "alice", "wonderland")
	u, _ := url.Parse(g.origin)
	old := c.Jar.Cookies(u)
	var cookieHdr []string
	for _, ck := range old {
		cookieHdr = append(cookieHdr, ck.Name+"="+ck.Value)
	}
	plain := &http.Client{Timeout: ioTimeout, CheckRedirect: noFollow}
	const n = 16
	status := make(chan int, n)
	for range n {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, g.origin+"/x", nil)
			req.Header.Set("Cookie", strings.Join(cookieHdr, "; "))
			resp, err := plain.Do(req)
			if err != nil {
				status <- 0
				return
			}
			resp.Body.Close()
			status <- resp.StatusCode
		}()
	}
	for range n {
		if s := <-status; s != http.StatusOK {
			t.Errorf("concurrent request with the same session: status %d, want 200", s)
		}
	}
	// The cookie the refresh replaced still works for a while (requests the
	// browser sent before it saw the new one), and so does the new one.
	req, _ := http.NewRequest(http.MethodGet, g.origin+"/late", nil)
	req.Header.Set("Cookie", strings.Join(cookieHdr, "; "))
	if resp, err := plain.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("request with the replaced cookie: %v %v", resp, err)
	}
	decodeEcho(t, fetch(t, c, g.origin+"/again", nil))
}

func TestChooserListsRouteProviders(t *testing.T) {
	g := startIdentity(t, `  providers:
    - name: corp
      display_name: Corp SSO
      issuer: http://127.0.0.1:1/unreachable
      client_id: gatehouse`)
	c := browser(t)
	resp := fetch(t, c, g.origin+"/reports?q=1", nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want 302 to the chooser", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, g.origin+"/.gatehouse/login?rd=") {
		t.Fatalf("Location = %q, want the sign-in chooser", loc)
	}
	page := fetch(t, c, loc, nil)
	body, _ := io.ReadAll(page.Body)
	for _, want := range []string{"Corp SSO", "gatehouse", "provider=corp", "provider=builtin"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("chooser lacks %q:\n%s", want, body)
		}
	}
	// The provider that is down gets a 503 page, not a hang or a 500.
	down := fetch(t, c, g.origin+"/.gatehouse/login?provider=corp&rd=%2Freports", nil)
	if down.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("provider down: %d, want 503", down.StatusCode)
	}
	// Choosing the built-in provider signs in and returns to the page.
	pick := fetch(t, c, g.origin+"/.gatehouse/login?provider=builtin&rd=%2Freports%3Fq%3D1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cb, err := testenv.Login(ctx, c, pick.Header.Get("Location"), "alice", "wonderland", g.origin+"/.gatehouse/callback")
	if err != nil {
		t.Fatal(err)
	}
	if resp := fetch(t, c, cb.String(), nil); resp.Header.Get("Location") != g.origin+"/reports?q=1" {
		t.Errorf("after sign-in, sent to %q", resp.Header.Get("Location"))
	}
	// An open redirect through rd falls back to the origin after sign-in.
	evil := fetch(t, c, g.origin+"/.gatehouse/login?provider=builtin&rd=%2F%2Fevil.example%2F", nil)
	cb, err = testenv.Login(ctx, c, evil.Header.Get("Location"), "alice", "wonderland", g.origin+"/.gatehouse/callback")
	if err != nil {
		t.Fatal(err)
	}
	if resp := fetch(t, c, cb.String(), nil); resp.Header.Get("Location") != g.origin+"/" {
		t.Errorf("rd=//evil.example/ sent the user to %q, want %q", resp.Header.Get("Location"), g.origin+"/")
	}
}

func TestKeyRotationMidSession(t *testing.T) {
	// The provider rotates its signing key right after the sign-in (well
	// within gatehouse's 10 s JWKS refetch floor); the next refresh brings
	// an ID token under the new key, which must still verify.
	g := startIdentity(t, "  session: {refresh_before: 5m}")
	c := browser(t)
	g.signIn(t, c, "/", "alice", "wonderland")
	if err := g.app.BuiltinProvider().RotateKey(); err != nil {
		t.Fatal(err)
	}
	e := decodeEcho(t, fetch(t, c, g.origin+"/after-rotation", nil))
	if e.Header.Get("X-Gatehouse-User") != "alice" {
		t.Errorf("identity after rotation: %v", e.Header)
	}
	// A new sign-in under the new key works too.
	g.signIn(t, browser(t), "/", "bob", "builder")
}

// apiIssuer is an access token issuer for the bearer tests: a JWKS on
// 127.0.0.1 and an RSA key that signs the tokens the test needs.
type apiIssuer struct {
	url string
	key *rsa.PrivateKey
}

func newAPIIssuer(t *testing.T) *apiIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "api1", Algorithm: "RS256", Use: "sig"}}})
	}))
	return &apiIssuer{url: srv.URL, key: key}
}

func (a *apiIssuer) token(t *testing.T, edit func(c map[string]any)) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{
		"iss": a.url, "sub": "svc-1", "aud": "api://gatehouse", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": "robot@example.test", "groups": []string{"analysts"},
	}
	if edit != nil {
		edit(c)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: a.key}, (&jose.SignerOptions{}).WithHeader("kid", "api1").WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestBearerTokenPolicyAndHygiene(t *testing.T) {
	iss := newAPIIssuer(t)
	g := startIdentity(t, fmt.Sprintf(`  bearer:
    - issuer: %s
      jwks_url: %s/keys
      audiences: [api://gatehouse]`, iss.url, iss.url))
	c := &http.Client{Timeout: ioTimeout, CheckRedirect: noFollow}
	auth := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	e := decodeEcho(t, fetch(t, c, g.origin+"/analytics/q", auth(iss.token(t, nil))))
	if e.Header.Get("X-Gatehouse-User") != "robot@example.test" || e.Header.Get("X-Gatehouse-Groups") != "analysts" {
		t.Errorf("identity headers = %v", e.Header)
	}
	if e.Header.Get("Authorization") != "" {
		t.Error("the bearer token reached the upstream")
	}
	verifyAssertion(t, g.origin, e.Header.Get("X-Gatehouse-Assertion"))

	for _, tc := range []struct {
		name   string
		tok    string
		status int
	}{
		{"GroupDenied", iss.token(t, func(c map[string]any) { c["groups"] = []string{"staff"} }), http.StatusForbidden},
		{"ExpiredToken", iss.token(t, func(c map[string]any) {
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
			c["exp"] = time.Now().Add(-time.Hour).Unix()
		}), http.StatusUnauthorized},
		{"WrongAudience", iss.token(t, func(c map[string]any) { c["aud"] = "gatehouse" }), http.StatusUnauthorized},
		{"Garbage", "not.a.token", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := fetch(t, c, g.origin+"/analytics/q", auth(tc.tok))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == http.StatusUnauthorized && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestSessionAndTokensNeverLogged(t *testing.T) {
	iss := newAPIIssuer(t)
	g := startIdentity(t, fmt.Sprintf(`  session: {refresh_before: 5m}
  bearer:
    - issuer: %s
      jwks_url: %s/keys
      audiences: [api://gatehouse]`, iss.url, iss.url))
	c := browser(t)
	cb := g.signIn(t, c, "/", "alice", "wonderland")
	decodeEcho(t, fetch(t, c, g.origin+"/refreshing", nil))
	u, _ := url.Parse(g.origin)
	var secrets []string
	for _, ck := range c.Jar.Cookies(u) {
		secrets = append(secrets, ck.Value)
	}
	tok := iss.token(t, nil)
	secrets = append(secrets, tok, cb.Query().Get("code"))
	decodeEcho(t, fetch(t, c, g.origin+"/analytics/x", http.Header{"Authorization": {"Bearer " + tok}}))
	fetch(t, c, g.origin+"/analytics/x", http.Header{"Authorization": {"Bearer " + tok[:len(tok)-4] + "AAAA"}})
	g.stop()
	for _, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("suspiciously short secret %q", s)
		}
		for name, stream := range map[string]string{"audit": g.audit.String(), "operator log": g.log.String()} {
			// Any 16-byte piece is enough to count as disclosure.
			if strings.Contains(stream, s[len(s)-16:]) || strings.Contains(stream, s[:16]) {
				t.Errorf("%s contains a credential", name)
			}
		}
	}
}

func TestPassAccessTokenOnlyWhereOptedIn(t *testing.T) {
	up := newEcho(t)
	g := startBuiltinGatehouse(t, "", fmt.Sprintf(`
upstreams:
  app: {targets: [%s]}
routes:
  - name: calls-apis
    path: /calls-apis
    upstream: app
    pass_access_token: true
    policy: {allow: [{authenticated: true}]}
  - name: app
    path: /
    upstream: app
    policy: {allow: [{authenticated: true}]}
`, up.URL))
	c := browser(t)
	g.signIn(t, c, "/", "alice", "wonderland")
	e := decodeEcho(t, fetch(t, c, g.origin+"/calls-apis/x", http.Header{"Authorization": {"Bearer client-sent"}}))
	at := e.Header.Get("Authorization")
	if !strings.HasPrefix(at, "Bearer ") || at == "Bearer client-sent" || len(at) < len("Bearer ")+16 {
		t.Errorf("opted-in route: Authorization = %q, want the provider's access token", at)
	}
	if got := decodeEcho(t, fetch(t, c, g.origin+"/other", http.Header{"Authorization": {"Bearer client-sent"}})).Header.Get("Authorization"); got != "" {
		t.Errorf("route without the opt-in received Authorization %q", got)
	}
	// The token never shows on /.gatehouse/me.
	me := fetch(t, c, g.origin+"/.gatehouse/me", http.Header{"Accept": {"application/json"}})
	body, _ := io.ReadAll(me.Body)
	if strings.Contains(string(body), strings.TrimPrefix(at, "Bearer ")) {
		t.Error("/.gatehouse/me shows the access token")
	}
}

func TestRefusedRefreshEndsSession(t *testing.T) {
	g := startIdentity(t, "  session: {refresh_before: 5m}")
	c := browser(t)
	g.signIn(t, c, "/", "bob", "builder")
	decodeEcho(t, fetch(t, c, g.origin+"/before", nil))
	// bob is removed from the users file: the provider refuses his next
	// refresh (invalid_grant), and the session ends at once.
	b, err := os.ReadFile("../idp/demo_users.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	without := text[:strings.Index(text, "  - username: bob")]
	users, err := idp.ParseUsers("without-bob.yaml", []byte(without))
	if err != nil {
		t.Fatal(err)
	}
	g.app.BuiltinProvider().SetUsers(users)
	if resp := fetch(t, c, g.origin+"/after", nil); resp.StatusCode != http.StatusFound {
		t.Fatalf("after a refused refresh: %d, want 302 to sign in", resp.StatusCode)
	}
	found := false
	for _, r := range g.records() {
		if r.Path == "/after" && r.Reason == "refresh-failed" {
			found = true
		}
	}
	if !found {
		t.Error("no audit record with reason refresh-failed")
	}
}

func TestUpstreamCannotSetGatehouseCookies(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range []string{"gh_session=planted; Path=/", "app=1; Path=/", "__Host-gh_flow_abc=x; Path=/; Secure", "gh_session_x=kept"} {
			w.Header().Add("Set-Cookie", c)
		}
	}))
	g := start(t, oneRoute(up.URL, ""))
	resp, err := client().Get(g.url("public") + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := strings.Join(resp.Header["Set-Cookie"], " | ")
	if got != "app=1; Path=/ | gh_session_x=kept" {
		t.Errorf("Set-Cookie reaching the client = %q, want only the app's own cookies", got)
	}
}
