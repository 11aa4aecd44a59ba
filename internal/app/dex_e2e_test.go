//go:build e2e

package app_test

// This file signs users in to gatehouse through a real Dex (testenv.Dex, a
// separate process on 127.0.0.1), driven by an HTTP client with a cookie
// jar: code flow with PKCE, group policy, refresh with changed groups,
// RP-initiated and back-channel logout, and a signing-key rotation at Dex
// mid-session. Run with: go test -tags e2e -run Dex ./internal/app
//
// The Dex behaviour these tests rely on (sessions, sid, logout tokens
// without typ, groups on refresh, the 30 s rotation check) is described in
// internal/testenv/doc.go and tools/dex/README.md.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/testenv"
)

// Names and bounds shared by the Dex tests.
const (
	dexClientID     = "gatehouse"
	dexClientSecret = "dex-e2e-client-secret" // test-only: reaches gatehouse as env:GH_DEX_SECRET
	dexSecretEnv    = "GH_DEX_SECRET"
	// backchannelWait bounds the wait for Dex's fire-and-forget logout token.
	backchannelWait = 10 * time.Second
	// rotationWait bounds the wait for Dex to rotate its signing key: it
	// checks every 30 s, so a 10 s period rotates at the first check.
	rotationWait = 45 * time.Second
	// dexConnectorID is the ID of Dex's password connector.
	dexConnectorID = "local"
)

func dexAlice(groups ...string) testenv.DexUser {
	return testenv.DexUser{Username: "alice", Email: "alice@example.test", UserID: "u-alice",
		Password: "alice-pw", Groups: groups}
}

func dexBob(groups ...string) testenv.DexUser {
	return testenv.DexUser{Username: "bob", Email: "bob@example.test", UserID: "u-bob",
		Password: "bob-pw", Groups: groups}
}

// dexGatehouse is gatehouse signing users in through Dex, in front of an
// echo upstream, on a public port chosen before either starts (the public
// URL and Dex's registered redirect URIs name it).
type dexGatehouse struct {
	*gatehouse
	origin string
	dex    *testenv.DexServer
	// dexOpts are the options Dex was started with, clients included, for
	// Restart.
	dexOpts testenv.DexOptions
}

// startDexGatehouse starts Dex with opts (its client is added here) and
// then gatehouse with the provider "dex". session is YAML for
// identity.session, or "". Routes: /admin needs group admins, / needs a
// signed-in user.
func startDexGatehouse(t *testing.T, opts testenv.DexOptions, session string) *dexGatehouse {
	t.Helper()
	up := newEcho(t)
	return startDexGatehouseWith(t, opts, session, fmt.Sprintf(`
upstreams:
  app: {targets: [%s]}
routes:
  - name: admin
    path: /admin
    upstream: app
    policy:
      allow: [{name: admins, groups: [admins]}]
  - name: app
    path: /
    upstream: app
    policy:
      allow: [{name: signed-in, authenticated: true}]
`, up.URL))
}

// startDexGatehouseWith starts Dex with opts (gatehouse's client, with its
// redirect, logout and back-channel URIs on a free port, is added here) and
// then gatehouse with the provider "dex" on that port. session is YAML for
// identity.session, or ""; upstreamsAndRoutesYAML is the rest of the
// configuration (top-level upstreams and routes).
func startDexGatehouseWith(t *testing.T, opts testenv.DexOptions, session, upstreamsAndRoutesYAML string) *dexGatehouse {
	t.Helper()
	port := testenv.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	opts.Clients = []testenv.DexClient{{
		ID:                     dexClientID,
		Secret:                 dexClientSecret,
		RedirectURIs:           []string{origin + "/.gatehouse/callback"},
		PostLogoutRedirectURIs: []string{origin + "/.gatehouse/logged-out"},
		BackchannelLogoutURI:   origin + "/.gatehouse/backchannel-logout",
	}}
	dex := testenv.Dex(t, opts)
	t.Setenv(dexSecretEnv, dexClientSecret)
	sessionYAML := ""
	if session != "" {
		sessionYAML = "  session: " + session
	}
	yaml := fmt.Sprintf(`
listeners:
  - name: public
    address: 127.0.0.1:%d
public_url: %s
admin: {address: 127.0.0.1:0}
identity:
%s
  providers:
    - name: dex
      issuer: %s
      client_id: %s
      client_secret: env:%s
      scopes: [openid, email, profile, groups, offline_access]
      groups_claim: groups
`, port, origin, sessionYAML, dex.Issuer, dexClientID, dexSecretEnv) + upstreamsAndRoutesYAML
	return &dexGatehouse{gatehouse: start(t, yaml), origin: origin, dex: dex, dexOpts: opts}
}

// signIn opens path without a session, is sent to Dex, signs in there with
// Dex's form (or passes straight through on Dex's single sign-on when the
// jar has a Dex session) and follows the callback back to path. It returns
// the authorization request URL gatehouse sent the browser to.
func (g *dexGatehouse) signIn(t *testing.T, c *http.Client, path string, u testenv.DexUser) *url.URL {
	t.Helper()
	authURL, _ := signInThrough(t, c, g.origin, path, g.dex.Issuer+"/auth", u.Email, u.Password)
	return authURL
}

// sessionCookie returns the value of the gh_session cookie in c's jar.
func (g *dexGatehouse) sessionCookie(t *testing.T, c *http.Client) string {
	t.Helper()
	return sessionCookie(t, c, g.origin)
}

// withCookie GETs path with only the given session cookie (no jar), as a
// copy of the cookie replayed elsewhere would, and returns the status.
func (g *dexGatehouse) withCookie(t *testing.T, path, cookie string) int {
	t.Helper()
	resp := fetch(t, client(), g.origin+path, http.Header{"Cookie": {"gh_session=" + cookie}})
	return resp.StatusCode
}

// post sends a POST with hdr and an empty form body, and reads the body.
func post(t *testing.T, c *http.Client, u string, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

// dexSubject is Dex's opaque sub: base64url (no padding) of the protobuf
// IDTokenSubject{user_id: 1, conn_id: 2} (Dex server/internal/codec.go).
func dexSubject(userID, connID string) string {
	b := []byte{0x0a, byte(len(userID))}
	b = append(b, userID...)
	b = append(b, 0x12, byte(len(connID)))
	b = append(b, connID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// dexCurrentKID returns the kid of Dex's current signing key: the first
// key of ISSUER/keys.
func dexCurrentKID(t *testing.T, issuer string) string {
	t.Helper()
	resp := fetch(t, &http.Client{Timeout: ioTimeout}, issuer+"/keys", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/keys: status %d", issuer, resp.StatusCode)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("Dex JWKS: %v", err)
	}
	if len(set.Keys) == 0 || set.Keys[0].KID == "" {
		t.Fatalf("Dex JWKS has no keys: %+v", set)
	}
	return set.Keys[0].KID
}

// dexShowsLoginForm follows Dex's redirects from authURL with c and reports
// whether Dex asks for a password (true) or sends the browser straight back
// to gatehouse's callback on its single sign-on session (false).
func (g *dexGatehouse) dexShowsLoginForm(t *testing.T, c *http.Client, authURL string) bool {
	t.Helper()
	u := authURL
	for range 10 {
		resp := fetch(t, c, u, nil)
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
			next, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			next, err = next.Parse(loc)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(next.String(), g.origin+"/.gatehouse/callback") {
				return false
			}
			u = next.String()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `type="password"`) {
			return true
		}
		t.Fatalf("GET %s: status %d, neither a redirect nor a password form:\n%s", u, resp.StatusCode, body)
	}
	t.Fatalf("no password form and no callback after 10 requests from %s", authURL)
	return false
}

// copyCookies returns a new browser (see browser) whose jar holds the named
// cookies of from's jar for u.
func copyCookies(t *testing.T, from *http.Client, u string, names ...string) *http.Client {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	c := browser(t)
	var kept []*http.Cookie
	for _, ck := range from.Jar.Cookies(pu) {
		for _, n := range names {
			if ck.Name == n {
				kept = append(kept, ck)
			}
		}
	}
	if len(kept) != len(names) {
		t.Fatalf("jar has %d of the cookies %v for %s", len(kept), names, u)
	}
	c.Jar.SetCookies(pu, kept)
	return c
}

func TestDexSignInWithPKCEReachesUpstreamWithIdentity(t *testing.T) {
	alice := dexAlice("admins", "staff")
	g := startDexGatehouse(t, testenv.DexOptions{Users: []testenv.DexUser{alice}}, "")
	c := browser(t)
	authURL := g.signIn(t, c, "/hello?x=1", alice)

	// The authorization request: code flow, PKCE S256, state, nonce, the
	// configured scopes and gatehouse's callback.
	q := authURL.Query()
	for name, want := range map[string]string{
		"response_type":         "code",
		"client_id":             dexClientID,
		"redirect_uri":          g.origin + "/.gatehouse/callback",
		"code_challenge_method": "S256",
		"scope":                 "openid email profile groups offline_access",
	} {
		if got := q.Get(name); got != want {
			t.Errorf("authorization request %s = %q, want %q", name, got, want)
		}
	}
	if len(q.Get("code_challenge")) != 43 { // base64url of SHA-256, RFC 7636 §4.2
		t.Errorf("code_challenge = %q, want 43 characters", q.Get("code_challenge"))
	}
	if q.Get("state") == "" || q.Get("nonce") == "" {
		t.Errorf("state %q, nonce %q: want both", q.Get("state"), q.Get("nonce"))
	}

	e := decodeEcho(t, fetch(t, c, g.origin+"/hello?x=1", http.Header{
		"X-Gatehouse-User": {"mallory"}, // forged: replaced
	}))
	// Dex's static users have no preferred_username: the user header
	// falls back to the email.
	if got := e.Header.Get("X-Gatehouse-User"); got != "alice@example.test" {
		t.Errorf("X-Gatehouse-User = %q, want alice@example.test", got)
	}
	if got := e.Header.Get("X-Gatehouse-Email"); got != "alice@example.test" {
		t.Errorf("X-Gatehouse-Email = %q", got)
	}
	if got := e.Header.Get("X-Gatehouse-Groups"); got != "admins,staff" {
		t.Errorf("X-Gatehouse-Groups = %q, want admins,staff", got)
	}
	if got := e.Header.Get("Cookie"); strings.Contains(got, "gh_") {
		t.Errorf("upstream received gatehouse cookies: %q", got)
	}
	wantSub := dexSubject(alice.UserID, dexConnectorID)
	claims := verifyAssertion(t, g.origin, e.Header.Get("X-Gatehouse-Assertion"))
	if claims["iss"] != g.origin || claims["aud"] != g.origin || claims["email"] != alice.Email || claims["sub"] != wantSub {
		t.Errorf("assertion claims = %v, want iss and aud %s, email %s, sub %s", claims, g.origin, alice.Email, wantSub)
	}
	if groups, _ := claims["groups"].([]any); len(groups) != 2 || groups[0] != "admins" || groups[1] != "staff" {
		t.Errorf("assertion groups = %v, want [admins staff]", claims["groups"])
	}

	var allowed int
	for _, r := range g.records() {
		if r.Path == "/hello" && r.Decision == "allow" && r.Status == http.StatusOK {
			allowed++
			if r.Auth != "session" || r.Rule != "signed-in" || r.Route != "app" ||
				r.Email != alice.Email || r.Subject != wantSub {
				t.Errorf("audit record = %+v, want auth_method session, rule signed-in, route app, email %s, subject %s",
					r, alice.Email, wantSub)
			}
		}
	}
	if allowed != 1 {
		t.Errorf("%d allowed /hello records, want 1", allowed)
	}
}

func TestDexGroupPolicyAllowsAndDenies(t *testing.T) {
	alice, bob := dexAlice("admins", "staff"), dexBob("staff")
	g := startDexGatehouse(t, testenv.DexOptions{Users: []testenv.DexUser{alice, bob}}, "")

	ca := browser(t)
	g.signIn(t, ca, "/admin/report", alice)
	decodeEcho(t, fetch(t, ca, g.origin+"/admin/report", nil))

	cb := browser(t)
	g.signIn(t, cb, "/", bob)
	decodeEcho(t, fetch(t, cb, g.origin+"/", nil)) // signed in: allowed on /
	resp := fetch(t, cb, g.origin+"/admin/report", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob on /admin: %d, want 403", resp.StatusCode)
	}
	for _, want := range []string{"group-denied", "admins", bob.Email} {
		if !strings.Contains(string(body), want) {
			t.Errorf("denied page lacks %q:\n%s", want, body)
		}
	}

	var sawAllow, sawDeny bool
	for _, r := range g.records() {
		if r.Path != "/admin/report" || r.Status == http.StatusFound {
			continue
		}
		switch r.Email {
		case alice.Email:
			sawAllow = true
			if r.Decision != "allow" || r.Rule != "admins" || r.Status != http.StatusOK || r.Auth != "session" {
				t.Errorf("alice's audit record = %+v, want allow by rule admins, 200", r)
			}
		case bob.Email:
			sawDeny = true
			if r.Decision != "deny" || r.Reason != "group-denied" || r.Status != http.StatusForbidden {
				t.Errorf("bob's audit record = %+v, want deny, group-denied, 403", r)
			}
		}
	}
	if !sawAllow || !sawDeny {
		t.Errorf("audit records: alice allowed %v, bob denied %v; want both", sawAllow, sawDeny)
	}
}

// TestDexRefreshPicksUpChangedGroups changes bob's groups at Dex while he
// is signed in. Dex re-reads the user on refresh only without sessions, and
// static users change only by a restart, which keeps refresh tokens only
// with persistent storage (testenv/doc.go, "Groups on refresh").
func TestDexRefreshPicksUpChangedGroups(t *testing.T) {
	opts := testenv.DexOptions{
		Users:           []testenv.DexUser{dexBob("staff")},
		IDTokenTTL:      time.Minute, // Dex's access tokens live as long
		DisableSessions: true,
		Persistent:      true,
	}
	// refresh_before above the token lifetime: every request refreshes.
	g := startDexGatehouse(t, opts, "{refresh_before: 59m}")
	c := browser(t)
	g.signIn(t, c, "/", dexBob())

	e := decodeEcho(t, fetch(t, c, g.origin+"/", nil))
	if got := e.Header.Get("X-Gatehouse-Groups"); got != "staff" {
		t.Errorf("groups before the change = %q, want staff", got)
	}
	if resp := fetch(t, c, g.origin+"/admin/", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob on /admin before the change: %d, want 403", resp.StatusCode)
	}
	refreshesBefore := strings.Count(g.log.String(), "session refreshed")
	if refreshesBefore < 2 {
		t.Errorf("%d refreshes logged for two requests, want every request to refresh", refreshesBefore)
	}

	opts = g.dexOpts
	opts.Users = []testenv.DexUser{dexBob("staff", "admins")}
	g.dex.Restart(t, opts)

	e = decodeEcho(t, fetch(t, c, g.origin+"/", nil))
	if got := e.Header.Get("X-Gatehouse-Groups"); got != "staff,admins" {
		t.Errorf("groups after the change = %q, want staff,admins", got)
	}
	decodeEcho(t, fetch(t, c, g.origin+"/admin/", nil))
	if n := strings.Count(g.log.String(), "session refreshed"); n <= refreshesBefore {
		t.Errorf("no refresh logged after Dex's restart (%d before, %d after)", refreshesBefore, n)
	}
}

// TestDexLogoutEndsSessionAtDex is RP-initiated logout: gatehouse ends its
// session and sends the browser to Dex's end_session_endpoint, which ends
// Dex's session and returns to gatehouse's signed-out page.
func TestDexLogoutEndsSessionAtDex(t *testing.T) {
	alice := dexAlice("admins")
	g := startDexGatehouse(t, testenv.DexOptions{Users: []testenv.DexUser{alice}}, "")
	c := browser(t)
	g.signIn(t, c, "/", alice)
	decodeEcho(t, fetch(t, c, g.origin+"/", nil))
	old := g.sessionCookie(t, c)

	resp := post(t, c, g.origin+"/.gatehouse/logout", http.Header{
		"Origin": {g.origin}, "Sec-Fetch-Site": {"same-origin"},
	})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d, want 303", resp.StatusCode)
	}
	end, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	eq := end.Query()
	if base := end.Scheme + "://" + end.Host + end.Path; base != g.dex.Issuer+"/logout" {
		t.Errorf("logout redirects to %q, want Dex's end_session_endpoint %s/logout", base, g.dex.Issuer)
	}
	if eq.Get("id_token_hint") == "" {
		t.Error("end-session URL has no id_token_hint")
	}
	if got, want := eq.Get("post_logout_redirect_uri"), g.origin+"/.gatehouse/logged-out"; got != want {
		t.Errorf("post_logout_redirect_uri = %q, want %q", got, want)
	}

	// Dex ends the session its cookie names: follow with the same jar.
	resp = fetch(t, c, end.String(), nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, g.origin+"/.gatehouse/logged-out") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("Dex logout: status %d, Location %q, want 302 to gatehouse's signed-out page; body:\n%s", resp.StatusCode, loc, body)
	}
	if resp = fetch(t, c, resp.Header.Get("Location"), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("signed-out page: %d, want 200", resp.StatusCode)
	}

	// gatehouse's session is gone, even for a copy of the cookie.
	if code := g.withCookie(t, "/", old); code != http.StatusFound {
		t.Errorf("old session cookie after logout: %d, want 302 to sign in", code)
	}
	// Dex's session is gone too: signing in again asks for the password.
	resp = fetch(t, c, g.origin+"/", nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("after logout: %d, want 302 to sign in", resp.StatusCode)
	}
	if !g.dexShowsLoginForm(t, c, resp.Header.Get("Location")) {
		t.Error("Dex signed the browser in again without a password: its session survived the logout")
	}
}

// TestDexBackchannelLogoutRevokesLiveSession ends a Dex session at Dex
// itself (the user signs out on Dex's page, not through gatehouse). Dex
// posts a logout token with that session's sid, and gatehouse ends every
// session signed in through that Dex session, and only those.
func TestDexBackchannelLogoutRevokesLiveSession(t *testing.T) {
	alice := dexAlice("admins")
	g := startDexGatehouse(t, testenv.DexOptions{Users: []testenv.DexUser{alice}}, "")

	// Browser A signs in (Dex session 1). A2 is a second gatehouse session
	// in the same Dex session: a browser with A's Dex cookie, signed in by
	// Dex's single sign-on. B signs in separately (Dex session 2).
	a := browser(t)
	g.signIn(t, a, "/", alice)
	a2 := copyCookies(t, a, g.dex.Issuer+"/", "dex_session")
	g.signIn(t, a2, "/", alice)
	b := browser(t)
	g.signIn(t, b, "/", alice)
	sessA, sessA2, sessB := g.sessionCookie(t, a), g.sessionCookie(t, a2), g.sessionCookie(t, b)
	for name, v := range map[string]string{"A": sessA, "A2": sessA2, "B": sessB} {
		if code := g.withCookie(t, "/", v); code != http.StatusOK {
			t.Fatalf("session %s before logout: %d, want 200", name, code)
		}
	}

	// A signs out at Dex: GET shows Dex's confirmation, its form POSTs.
	resp := fetch(t, a, g.dex.Issuer+"/logout", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `method="post"`) {
		t.Fatalf("Dex logout page: %d, want 200 with the confirmation form:\n%s", resp.StatusCode, body)
	}
	resp = post(t, a, g.dex.Issuer+"/logout", nil)
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Logged Out") {
		t.Fatalf("Dex logout: %d, want 200 and the logged-out page:\n%s", resp.StatusCode, body)
	}

	start := time.Now()
	if !waitEvery(backchannelWait, 200*time.Millisecond, func() bool { return g.withCookie(t, "/", sessA) == http.StatusFound }) {
		t.Fatalf("session A still valid %v after logging out at Dex: no back-channel logout", backchannelWait)
	}
	t.Logf("back-channel logout took effect after %v", time.Since(start).Round(time.Millisecond))
	if code := g.withCookie(t, "/", sessA2); code != http.StatusFound {
		t.Errorf("session A2 (same Dex session) after logout: %d, want 302 to sign in", code)
	}
	if code := g.withCookie(t, "/", sessB); code != http.StatusOK {
		t.Errorf("session B (another Dex session) after A's logout: %d, want 200", code)
	}

	var accepted int
	for _, r := range g.records() {
		if r.Path == "/.gatehouse/backchannel-logout" {
			if r.Decision != "allow" || r.Reason != "backchannel-logout" || r.Status != http.StatusOK {
				t.Errorf("back-channel audit record = %+v, want allow, backchannel-logout, 200", r)
				continue
			}
			accepted++
		}
	}
	if accepted != 1 {
		t.Errorf("%d accepted back-channel logout requests, want 1", accepted)
	}
}

// TestDexKeyRotationMidSession rotates Dex's signing key while a user is
// signed in: the next refresh brings an ID token signed with a key gatehouse
// has not seen, which it must find by refetching Dex's JWKS.
func TestDexKeyRotationMidSession(t *testing.T) {
	alice := dexAlice("admins")
	opts := testenv.DexOptions{
		Users:              []testenv.DexUser{alice},
		IDTokenTTL:         time.Minute,
		KeysRotationPeriod: 10 * time.Second, // rotates at Dex's first 30 s check
	}
	g := startDexGatehouse(t, opts, "{refresh_before: 59m}")
	// If Dex happens to rotate during the sign-in, the session never saw
	// the old key: sign in again (the next rotation is 30 s away).
	var c *http.Client
	var kid0 string
	for attempt := 0; ; attempt++ {
		kid0 = dexCurrentKID(t, g.dex.Issuer)
		c = browser(t)
		g.signIn(t, c, "/", alice)
		decodeEcho(t, fetch(t, c, g.origin+"/", nil))
		if dexCurrentKID(t, g.dex.Issuer) == kid0 {
			break
		}
		if attempt == 1 {
			t.Fatal("Dex rotated its key during two sign-ins in a row")
		}
	}

	start := time.Now()
	var kid1 string
	if !waitEvery(rotationWait, 200*time.Millisecond, func() bool { kid1 = dexCurrentKID(t, g.dex.Issuer); return kid1 != kid0 }) {
		t.Fatalf("Dex did not rotate its signing key within %v (kid %s)", rotationWait, kid0)
	}
	t.Logf("Dex rotated %s -> %s after %v", kid0, kid1, time.Since(start).Round(time.Second))

	refreshes := strings.Count(g.log.String(), "session refreshed")
	e := decodeEcho(t, fetch(t, c, g.origin+"/", nil))
	if got := e.Header.Get("X-Gatehouse-Groups"); got != "admins" {
		t.Errorf("groups after the rotation = %q, want admins", got)
	}
	if n := strings.Count(g.log.String(), "session refreshed"); n <= refreshes {
		t.Errorf("the request after the rotation did not refresh (%d refreshes before, %d after)", refreshes, n)
	}
	// And again: the new key is now known.
	decodeEcho(t, fetch(t, c, g.origin+"/", nil))

	// A new sign-in after the rotation: its ID token is signed with the
	// new key.
	c2 := browser(t)
	g.signIn(t, c2, "/after", alice)
	e = decodeEcho(t, fetch(t, c2, g.origin+"/after", nil))
	if got := e.Header.Get("X-Gatehouse-Email"); got != alice.Email {
		t.Errorf("X-Gatehouse-Email after a new sign-in = %q", got)
	}

	// Both sessions hold an ID token signed with the new key: the
	// id_token_hint gatehouse sends to Dex at logout is the one it verified.
	for name, cl := range map[string]*http.Client{"refreshed session": c, "new session": c2} {
		if kid := g.logoutHintKID(t, cl); kid != kid1 {
			t.Errorf("%s: ID token signed with kid %q, want the new key %q (old %q)", name, kid, kid1, kid0)
		}
	}
}

// logoutHintKID signs c out (same-origin POST) and returns the kid of the
// id_token_hint in the end-session URL gatehouse redirects to: the ID token
// gatehouse last verified for the session.
func (g *dexGatehouse) logoutHintKID(t *testing.T, c *http.Client) string {
	t.Helper()
	resp := post(t, c, g.origin+"/.gatehouse/logout", http.Header{
		"Origin": {g.origin}, "Sec-Fetch-Site": {"same-origin"},
	})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d, want 303", resp.StatusCode)
	}
	end, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	hint := end.Query().Get("id_token_hint")
	header, _, ok := strings.Cut(hint, ".")
	if !ok {
		t.Fatalf("end-session URL %q has no JWT id_token_hint", end.Redacted())
	}
	b, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatalf("id_token_hint header: %v", err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("id_token_hint header: %v", err)
	}
	return h.KID
}
