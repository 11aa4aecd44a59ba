package app_test

import (
	"context"
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

func startIdentity(t *testing.T, extra string) *identityGatehouse {
	t.Helper()
	up := newEcho(t)
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
`, port, origin, extra, up.URL)
	return &identityGatehouse{gatehouse: start(t, yaml), origin: origin}
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
	resp := fetch(t, c, g.origin+path, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: status %d, want 302 to sign in", path, resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, g.origin+"/.gatehouse/idp/") {
		t.Fatalf("redirected to %q, want the built-in provider", loc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cb, err := testenv.Login(ctx, c, loc, user, password, g.origin+"/.gatehouse/callback")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	resp = fetch(t, c, cb.String(), nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: status %d, want 303", resp.StatusCode)
	}
	if got := resp.Header.Get("Location"); got != g.origin+path {
		t.Fatalf("callback redirects to %q, want %q", got, g.origin+path)
	}
	return cb
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
	if strings.Contains(string(body), "ey") && strings.Contains(string(body), ".ey") {
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
	u, _ := url.Parse(g.origin)
	var value string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "gh_session" {
			value = ck.Value
		}
	}
	if value == "" {
		t.Fatal("no session cookie")
	}
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
