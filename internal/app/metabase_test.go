package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/app"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
	"github.com/gatehouse-proxy/gatehouse/internal/idp"
	"github.com/gatehouse-proxy/gatehouse/internal/metabase/metabasetest"
)

// startMetabaseRoute is gatehouse with the built-in provider in front of an
// echo upstream on a metabase route (two: /api-clients allows Metabase's
// own API credentials, / does not).
func startMetabaseRoute(t *testing.T) *identityGatehouse {
	t.Helper()
	up := newEcho(t)
	return startBuiltinGatehouse(t, "", fmt.Sprintf(`
upstreams:
  metabase: {targets: [%s]}
routes:
  - name: scripts
    host: scripts.test
    upstream: metabase
    metabase: {allow_api_clients: true}
    policy: {allow: [{groups: [analysts]}]}
  - name: metabase
    upstream: metabase
    metabase: {}
    policy: {allow: [{groups: [analysts]}]}
`, up.URL))
}

func TestMetabaseRoutePublicPaths(t *testing.T) {
	g := startMetabaseRoute(t)
	c := browser(t)
	for _, p := range []string{"/api/health", "/public/dashboard/abc", "/embed/question/x", "/app/dist/main.js", "/api/session/properties"} {
		resp := fetch(t, c, g.origin+p, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d, want 200 without sign-in", p, resp.StatusCode)
		}
	}
	if resp := fetch(t, c, g.origin+"/dashboard/1", nil); resp.StatusCode != http.StatusFound {
		t.Errorf("/dashboard/1: %d, want 302 to sign in", resp.StatusCode)
	}
}

// TestMetabaseSessionHeaderCannotBypassSignIn: a request carrying
// Metabase's own credentials (X-Metabase-Session, x-api-key) on a route
// that does not allow API clients is checked like any other, and the
// credential never reaches Metabase.
func TestMetabaseSessionHeaderCannotBypassSignIn(t *testing.T) {
	g := startMetabaseRoute(t)
	c := browser(t)
	forged := http.Header{"X-Metabase-Session": {"stolen-session-key"}, "X-Api-Key": {"mb_stolen"}, "Accept": {"application/json"}}
	if resp := fetch(t, c, g.origin+"/api/card/1", forged); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous with X-Metabase-Session: %d, want 401", resp.StatusCode)
	}
	g.signIn(t, c, "/", "alice", "wonderland")
	e := decodeEcho(t, fetch(t, c, g.origin+"/api/card/1", forged))
	if e.Header.Get("X-Metabase-Session") != "" || e.Header.Get("X-Api-Key") != "" {
		t.Errorf("Metabase credentials reached the app on a route without allow_api_clients: %v", e.Header)
	}
	if e.Header.Get("X-Gatehouse-User") != "alice" {
		t.Errorf("alice's identity missing: %v", e.Header)
	}
}

// TestMetabaseAPIClientsPassWhenAllowed: with allow_api_clients, a script's
// x-api-key goes to Metabase's own authentication, with no identity from
// gatehouse, and the audit record says so.
func TestMetabaseAPIClientsPassWhenAllowed(t *testing.T) {
	g := startMetabaseRoute(t)
	req, _ := http.NewRequest(http.MethodGet, g.origin+"/api/card/1", nil)
	req.Host = "scripts.test"
	req.Header.Set("X-Api-Key", "mb_script_key")
	req.Header.Set("X-Gatehouse-User", "mallory")
	req.Header.Set("X-Request-Id", "client-chosen")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Request-Id")
	e := decodeEcho(t, resp)
	if e.Header.Get("X-Api-Key") != "mb_script_key" {
		t.Fatalf("script with x-api-key: %d, app saw x-api-key %q", resp.StatusCode, e.Header.Get("X-Api-Key"))
	}
	if u := e.Header.Get("X-Gatehouse-User"); u != "" {
		t.Errorf("identity header %q reached the app for an API client", u)
	}
	if r := g.record(id); r.Reason != "app-credential" || r.Decision != "allow" || r.Auth != "" {
		t.Errorf("audit: %+v, want allow app-credential without auth method", r)
	}
}

// metabaseJWTSecret is the test Metabase's jwt-shared-secret; gatehouse
// reads it as env:GH_MB_JWT.
const metabaseJWTSecret = "test-only-metabase-jwt-shared-secret"

// startMetabaseJWT is gatehouse with the built-in provider in front of the
// Metabase test double (Enterprise, JWT SSO, group sync by name) on a
// metabase route in mode jwt.
func startMetabaseJWT(t *testing.T, identityExtra ...string) (*identityGatehouse, *metabasetest.Server) {
	t.Helper()
	return startMetabaseJWTWith(t, metabasetest.Options{}, "", identityExtra...)
}

// startMetabaseJWTWith is startMetabaseJWT with more test double options
// and route settings (YAML under the route, indented 4 spaces).
func startMetabaseJWTWith(t *testing.T, mo metabasetest.Options, routeExtra string, identityExtra ...string) (*identityGatehouse, *metabasetest.Server) {
	t.Helper()
	t.Setenv("GH_MB_JWT", metabaseJWTSecret)
	mo.Edition, mo.JWTEnabled, mo.JWTSharedSecret, mo.JWTGroupSync = metabasetest.Enterprise, true, metabaseJWTSecret, true
	mb := metabasetest.New(t, mo)
	g := startMetabaseGatehouse(t, mb, `
      mode: jwt
      jwt_secret: env:GH_MB_JWT`, routeExtra, identityExtra...)
	return g, mb
}

// startMetabaseGatehouse starts gatehouse with the built-in provider on a
// metabase route to mb, whose group Analysts it creates. metabaseYAML is
// the route's metabase settings besides groups (indented 6 spaces),
// routeExtra more route settings (4 spaces), identityExtra more identity
// settings (2 spaces).
func startMetabaseGatehouse(t *testing.T, mb *metabasetest.Server, metabaseYAML, routeExtra string, identityExtra ...string) *identityGatehouse {
	t.Helper()
	mb.AddGroup("Analysts")
	return startBuiltinGatehouse(t, strings.Join(identityExtra, "\n"), fmt.Sprintf(`
upstreams:
  metabase: {targets: [%s]}
routes:
  - name: metabase
    upstream: metabase
    metabase:%s
      groups: {analysts: Analysts}
    policy: {allow: [{authenticated: true}]}
%s
`, mb.URL, metabaseYAML, routeExtra))
}

// noMetabaseCookie fails the test if c's jar holds metabase.SESSION for
// origin: gatehouse never lets the browser hold the bound session.
func noMetabaseCookie(t *testing.T, c *http.Client, origin string) {
	t.Helper()
	u, _ := url.Parse(origin)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == metabasetest.SessionCookie {
			t.Errorf("the browser holds Metabase's session cookie %s", metabasetest.SessionCookie)
		}
	}
}

func metabaseUser(t *testing.T, c *http.Client, u string, hdr http.Header) string {
	t.Helper()
	resp := fetch(t, c, u, hdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	return resp.Header.Get(metabasetest.UserHeader)
}

func TestMetabaseJWTSignsUserInWithGroups(t *testing.T) {
	g, mb := startMetabaseJWT(t)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	for range 3 {
		if who := metabaseUser(t, alice, g.origin+"/dashboard/12", nil); who != "alice@example.test" {
			t.Fatalf("Metabase sees %q, want alice@example.test", who)
		}
	}
	if n := mb.Stats().SSOLogins; n != 1 {
		t.Errorf("%d Metabase sign-ins for three requests, want 1 (the session is bound)", n)
	}
	u, ok := mb.User("alice@example.test")
	if !ok || !slices.Contains(u.GroupNames, "Analysts") || slices.Contains(u.GroupNames, "Administrators") {
		t.Errorf("alice in Metabase: %+v, want in Analysts (mapped) and not Administrators (unmapped)", u)
	}
	noMetabaseCookie(t, alice, g.origin)
}

// TestStaleMetabaseSessionCannotActAsPreviousUser: a browser that kept
// alice's metabase.SESSION (or a forged one) and is now bob's acts as bob.
func TestStaleMetabaseSessionCannotActAsPreviousUser(t *testing.T) {
	g, mb := startMetabaseJWT(t)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	metabaseUser(t, alice, g.origin+"/dashboard/1", nil)
	keys := mb.Sessions("alice@example.test")
	if len(keys) != 1 {
		t.Fatalf("alice has %d Metabase sessions, want 1", len(keys))
	}
	bob := browser(t)
	g.signIn(t, bob, "/", "bob", "builder")
	stale := http.Header{"Cookie": {"metabase.SESSION=" + keys[0]}, "X-Metabase-Session": {keys[0]}}
	if who := metabaseUser(t, bob, g.origin+"/dashboard/1", stale); who != "bob@example.test" {
		t.Fatalf("bob's browser with alice's Metabase session: Metabase sees %q, want bob@example.test", who)
	}
	forged := http.Header{"Cookie": {"metabase.SESSION=00000000-0000-0000-0000-000000000000"}}
	if who := metabaseUser(t, bob, g.origin+"/dashboard/1", forged); who != "bob@example.test" {
		t.Errorf("with a forged metabase.SESSION: Metabase sees %q", who)
	}
}

// TestMetabaseSessionEndsWithGatehouseSession: logout deletes the bound
// Metabase session; a session Metabase ended is replaced once, and
// Metabase's own login page sends the user on.
func TestMetabaseSessionRenewedAndEnded(t *testing.T) {
	g, mb := startMetabaseJWT(t)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	metabaseUser(t, alice, g.origin+"/dashboard/1", nil)
	var keys []string // every Metabase session key of the test: never logged
	defer func() {
		keys = append(keys, mb.Sessions("alice@example.test")...)
		g.stop() // flushes the audit records
		for name, stream := range map[string]string{"audit": g.audit.String(), "operator log": g.log.String()} {
			for _, k := range append(keys, metabaseJWTSecret) {
				if strings.Contains(stream, k) {
					t.Errorf("the %s contains a Metabase session key or the JWT secret", name)
				}
			}
		}
	}()

	// Metabase ends the session (an admin, a restart with a new
	// database): the next API call gets 401, the one after a new session.
	keys = append(keys, mb.Sessions("alice@example.test")...)
	for _, k := range mb.Sessions("alice@example.test") {
		req, _ := http.NewRequest(http.MethodDelete, mb.URL+"/api/session", nil)
		req.Header.Set("X-Metabase-Session", k)
		if resp, err := client().Do(req); err == nil {
			resp.Body.Close()
		}
	}
	api := http.Header{"Accept": {"application/json"}}
	if resp := fetch(t, alice, g.origin+"/api/user/current", api); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("with the ended session: %d, want Metabase's 401", resp.StatusCode)
	}
	// Metabase's frontend then goes to its login page: gatehouse signs
	// the user in again and sends them back where they were.
	resp := fetch(t, alice, g.origin+"/auth/login?redirect=%2Fdashboard%2F1", nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != g.origin+"/dashboard/1" {
		t.Fatalf("/auth/login: %d to %q, want 302 to /dashboard/1", resp.StatusCode, resp.Header.Get("Location"))
	}
	if who := metabaseUser(t, alice, g.origin+"/dashboard/1", nil); who != "alice@example.test" {
		t.Fatalf("after renewal Metabase sees %q", who)
	}
	keys = append(keys, mb.Sessions("alice@example.test")...)
	if n := mb.Stats().SSOLogins; n != 2 {
		t.Errorf("%d Metabase sign-ins, want 2", n)
	}

	// gatehouse logout ends the Metabase session too.
	req, _ := http.NewRequest(http.MethodPost, g.origin+"/.gatehouse/logout", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	r2, err := alice.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	waitFor(5*time.Second, func() bool { return len(mb.Sessions("alice@example.test")) == 0 })
	if n := len(mb.Sessions("alice@example.test")); n != 0 {
		t.Errorf("alice has %d Metabase sessions after logout, want 0", n)
	}
}

// TestMetabaseGroupChangeOpensNewSession: Metabase applies groups only at
// sign-in. A refresh that keeps the groups keeps the Metabase session; one
// that changes them opens a new one with the new groups and ends the old.
func TestMetabaseGroupChangeOpensNewSession(t *testing.T) {
	// refresh_before equal to the provider's access token lifetime
	// makes every request refresh.
	g, mb := startMetabaseJWT(t, "  session: {refresh_before: 5m}")
	bob := browser(t)
	g.signIn(t, bob, "/", "bob", "builder")
	for range 3 {
		metabaseUser(t, bob, g.origin+"/dashboard/1", nil)
	}
	if n := mb.Stats().SSOLogins; n != 1 {
		t.Fatalf("%d Metabase sign-ins across refreshes with the same groups, want 1", n)
	}
	if u, _ := mb.User("bob@example.test"); slices.Contains(u.GroupNames, "Analysts") {
		t.Fatalf("bob in Analysts before the change: %v", u.GroupNames)
	}
	old := mb.Sessions("bob@example.test")
	if len(old) == 0 {
		t.Fatal("bob has no Metabase session before the group change")
	}

	b, err := os.ReadFile("../idp/demo_users.yaml")
	if err != nil {
		t.Fatal(err)
	}
	users, err := idp.ParseUsers("changed.yaml", []byte(strings.Replace(string(b), "groups: [staff]", "groups: [staff, analysts]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	g.app.BuiltinProvider().SetUsers(users)
	if who := metabaseUser(t, bob, g.origin+"/dashboard/1", nil); who != "bob@example.test" {
		t.Fatalf("after the change Metabase sees %q", who)
	}
	if n := mb.Stats().SSOLogins; n != 2 {
		t.Errorf("%d Metabase sign-ins, want 2 (a new session for the new groups)", n)
	}
	if u, _ := mb.User("bob@example.test"); !slices.Contains(u.GroupNames, "Analysts") {
		t.Errorf("bob's Metabase groups after the change: %v, want Analysts", u.GroupNames)
	}
	waitFor(5*time.Second, func() bool { return !slices.Contains(mb.Sessions("bob@example.test"), old[0]) })
	if slices.Contains(mb.Sessions("bob@example.test"), old[0]) {
		t.Error("the Metabase session opened with the old groups is still alive")
	}
}

// TestMetabaseLoginRedirectStaysOnOrigin: the redirect parameter of
// Metabase's login page, which gatehouse follows for a signed-in user,
// never leads off this origin (open redirect).
func TestMetabaseLoginRedirectStaysOnOrigin(t *testing.T) {
	g, _ := startMetabaseJWT(t)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	for _, rd := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "/auth/login?redirect=/x", "evil"} {
		resp := fetch(t, alice, g.origin+"/auth/login?redirect="+url.QueryEscape(rd), nil)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != g.origin+"/" {
			t.Errorf("redirect=%q: %d to %q, want 302 to %s/", rd, resp.StatusCode, resp.Header.Get("Location"), g.origin)
		}
	}
}

// startMetabaseBroker is gatehouse with the built-in provider in front of
// the Metabase test double (the free edition) on a metabase route in mode
// broker, with an admin API key and a broker key from the environment.
func startMetabaseBroker(t *testing.T) (*identityGatehouse, *metabasetest.Server) {
	t.Helper()
	const apiKey = "mb_test-only-admin-api-key"
	t.Setenv("GH_MB_API_KEY", apiKey)
	t.Setenv("GH_MB_BROKER_KEY", "test-only-broker-key-of-at-least-32-bytes!")
	mb := metabasetest.New(t, metabasetest.Options{
		APIKeys: []metabasetest.APIKey{{Name: "gatehouse", Key: apiKey, GroupID: metabasetest.AdministratorsGroupID}},
	})
	g := startMetabaseGatehouse(t, mb, `
      mode: broker
      api_key: env:GH_MB_API_KEY
      broker_key: env:GH_MB_BROKER_KEY`, "")
	return g, mb
}

func TestMetabaseBrokerSignsUserIn(t *testing.T) {
	g, mb := startMetabaseBroker(t)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	for range 3 {
		if who := metabaseUser(t, alice, g.origin+"/dashboard/12", nil); who != "alice@example.test" {
			t.Fatalf("Metabase sees %q, want alice@example.test", who)
		}
	}
	if n := mb.Stats().PasswordLogins; n != 1 {
		t.Errorf("%d Metabase logins for three requests, want 1", n)
	}
	u, ok := mb.User("alice@example.test")
	if !ok || !u.Active || !slices.Contains(u.GroupNames, "Analysts") || slices.Contains(u.GroupNames, "Administrators") {
		t.Errorf("alice in Metabase: %+v, want an active account in Analysts, not Administrators", u)
	}
	noMetabaseCookie(t, alice, g.origin)

	// Someone used "forgot password" on alice's account: Metabase ends
	// her sessions. The next API call gets 401, then gatehouse resets the
	// password and signs in again.
	if err := mb.ChangePasswordOutOfBand("alice@example.test", "Not-gatehouse-1"); err != nil {
		t.Fatal(err)
	}
	api := http.Header{"Accept": {"application/json"}}
	if resp := fetch(t, alice, g.origin+"/api/user/current", api); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after the out-of-band change: %d, want Metabase's 401", resp.StatusCode)
	}
	if who := metabaseUser(t, alice, g.origin+"/dashboard/12", nil); who != "alice@example.test" {
		t.Fatalf("after recovery Metabase sees %q", who)
	}
}

// TestBrokeredAccountPasswordPathsBlocked: brokered accounts are used
// through gatehouse only; Metabase's password login and reset pages are
// refused to browsers, so no one can take a brokered account over.
func TestBrokeredAccountPasswordPathsBlocked(t *testing.T) {
	g, _ := startMetabaseBroker(t)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	post, _ := http.NewRequest(http.MethodPost, g.origin+"/api/session", strings.NewReader(`{"username":"bob@example.test","password":"x"}`))
	post.Header.Set("Content-Type", "application/json")
	resp, err := alice.Do(post)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /api/session: %d, want 403", resp.StatusCode)
	}
	for _, p := range []string{"/auth/forgot_password", "/auth/reset_password/abc", "/api/session/forgot_password"} {
		if resp := fetch(t, alice, g.origin+p, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", p, resp.StatusCode)
		}
	}
	if resp := fetch(t, alice, g.origin+"/api/session/properties", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/api/session/properties: %d, want 200", resp.StatusCode)
	}
}

// TestMetabaseStreamedQueryNotCutAndCancelled: a streamed query that lasts
// longer than the route's idle timeout is not cut while rows keep coming
// (time compressed: a 3 s query, a row every 50 ms, an idle limit of 1 s),
// and a client that goes away cancels it at Metabase.
func TestMetabaseStreamedQueryNotCutAndCancelled(t *testing.T) {
	g, mb := startMetabaseJWTWith(t, metabasetest.Options{QueryDuration: 3 * time.Second, QueryInterval: 50 * time.Millisecond},
		"    timeouts: {idle: 1s}")
	bounded := ctxWithTimeout(t, 15*time.Second)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	query := func(ctx context.Context) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.origin+"/api/dataset", strings.NewReader(`{"native":{"query":"select 1"}}`))
		req.Header.Set("Content-Type", "application/json")
		c := *alice
		c.Timeout = 0 // it would cut the 3 s stream; ctx (under bounded) ends the wait instead
		return c.Do(req)
	}
	resp, err := query(bounded)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("streamed query: %d, %v after %d bytes", resp.StatusCode, err, len(body))
	}
	qs := mb.Queries()
	if len(qs) != 1 || !qs[0].Completed || qs[0].Email != "alice@example.test" {
		t.Fatalf("query at Metabase: %+v, want one completed as alice", qs)
	}

	ctx, cancel := context.WithCancel(bounded)
	resp, err = query(ctx)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel() // the analyst closes the tab
	resp.Body.Close()
	waitFor(5*time.Second, func() bool { qs := mb.Queries(); return len(qs) == 2 && qs[1].Done })
	if qs := mb.Queries(); len(qs) != 2 || !qs[1].Canceled || qs[1].Completed {
		t.Errorf("the second query at Metabase: %+v, want canceled when the client went away", qs)
	}
}

// TestMetabaseInitiatedSignInReturnsToPage: Metabase sends a browser to its
// JWT identity provider URI, gatehouse's /.gatehouse/metabase/sso, with
// return_to; gatehouse sends it back to that page on this origin only.
func TestMetabaseInitiatedSignInReturnsToPage(t *testing.T) {
	g, _ := startMetabaseJWT(t)
	c := browser(t)
	for rt, want := range map[string]string{
		"/dashboard/12?tab=3":  "/dashboard/12?tab=3",
		"//evil.example/":      "/",
		"https://evil.example": "/",
		"/auth/sso":            "/",
		"":                     "/",
	} {
		resp := fetch(t, c, g.origin+"/.gatehouse/metabase/sso?return_to="+url.QueryEscape(rt), nil)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != g.origin+want {
			t.Errorf("return_to=%q: %d to %q, want 302 to %s", rt, resp.StatusCode, resp.Header.Get("Location"), g.origin+want)
		}
	}
	// Signed out, that page then starts gatehouse's sign-in.
	if resp := fetch(t, c, g.origin+"/dashboard/12", nil); resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "/.gatehouse/idp/") {
		t.Errorf("signed out on the page: %d to %q, want the sign-in", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestMetabaseDeprovisionedUserStaysOut: `gatehouse metabase deprovision`
// deactivates the account and ends its sessions; gatehouse then never
// reactivates it, and the user gets an error page rather than Metabase.
func TestMetabaseDeprovisionedUserStaysOut(t *testing.T) {
	g, mb := startMetabaseBroker(t)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	metabaseUser(t, alice, g.origin+"/dashboard/1", nil)

	cfg, err := config.Parse("gatehouse.yaml", []byte(fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
public_url: http://127.0.0.1:1
identity: {builtin: {demo_users: true}}
upstreams:
  metabase: {targets: [%s]}
routes:
  - name: metabase
    upstream: metabase
    metabase: {mode: broker, api_key: env:GH_MB_API_KEY, broker_key: env:GH_MB_BROKER_KEY, groups: {analysts: Analysts}}
    policy: {allow: [{authenticated: true}]}
`, mb.URL)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := app.DeprovisionMetabaseUser(ctx, cfg, "metabase", "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	if u, _ := mb.User("alice@example.test"); u.Active || len(mb.Sessions("alice@example.test")) != 0 {
		t.Fatalf("after deprovision: active %v, %d sessions", u.Active, len(mb.Sessions("alice@example.test")))
	}
	api := http.Header{"Accept": {"application/json"}}
	fetch(t, alice, g.origin+"/api/user/current", api) // Metabase's 401 marks the session refused
	if resp := fetch(t, alice, g.origin+"/dashboard/1", nil); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("deprovisioned user: %d, want gatehouse's 502 error page", resp.StatusCode)
	}
	if u, _ := mb.User("alice@example.test"); u.Active {
		t.Error("gatehouse reactivated a deprovisioned user")
	}
}

// TestMetabaseSessionEndsAfterBackchannelLogout: a back-channel logout
// revokes the gatehouse session without its cookie; the Metabase session
// sealed in that cookie ends when the cookie is next presented, once.
func TestMetabaseSessionEndsAfterBackchannelLogout(t *testing.T) {
	g, mb := startMetabaseJWT(t)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	metabaseUser(t, alice, g.origin+"/dashboard/1", nil)
	if n := len(mb.Sessions("alice@example.test")); n != 1 {
		t.Fatalf("%d Metabase sessions, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.app.BuiltinProvider().EndSessions(ctx, idp.SubjectFor("alice")); err != nil {
		t.Fatalf("EndSessions: %v", err)
	}
	cookie := http.Header{"Cookie": {"gh_session=" + sessionCookie(t, alice, g.origin)}}
	for range 3 { // a stubborn client repeats the dead cookie
		if resp := fetch(t, client(), g.origin+"/dashboard/1", cookie); resp.StatusCode != http.StatusFound {
			t.Fatalf("after back-channel logout: %d, want 302 to sign in", resp.StatusCode)
		}
	}
	waitFor(5*time.Second, func() bool { return len(mb.Sessions("alice@example.test")) == 0 })
	if n := len(mb.Sessions("alice@example.test")); n != 0 {
		t.Errorf("alice has %d Metabase sessions after back-channel logout, want 0", n)
	}
	if n := mb.Stats().SessionDeletions; n != 1 {
		t.Errorf("%d Metabase session deletions, want 1", n)
	}
}

// TestMetabaseIssuedSessionBoundOnlyForSameUser: when Metabase issues a
// session itself (its password login, in mode jwt), gatehouse binds it in
// place of the old one only if it is the signed-in user's; another
// account's session is dropped and ended, so knowing someone's Metabase
// password never switches identity in Metabase.
func TestMetabaseIssuedSessionBoundOnlyForSameUser(t *testing.T) {
	g, mb := startMetabaseJWT(t)
	mb.AddUser(metabasetest.NewUser{Email: "alice@example.test", FirstName: "Alice", Password: "Alice-pass-1"})
	mb.AddUser(metabasetest.NewUser{Email: "bob@example.test", FirstName: "Bob", Password: "Bob-pass-1"})
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	metabaseUser(t, alice, g.origin+"/dashboard/1", nil)
	login := func(user, pw string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, g.origin+"/api/session", strings.NewReader(`{"username":"`+user+`","password":"`+pw+`"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := alice.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == "metabase.SESSION" {
				t.Errorf("Metabase's session cookie reached the browser (login as %s)", user)
			}
		}
		return resp
	}

	// bob's password: Metabase answers with a session for bob, which is
	// dropped and ended; alice stays alice.
	logins := mb.Stats().PasswordLogins
	if resp := login("bob@example.test", "Bob-pass-1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("Metabase password login as bob: %d, want 200", resp.StatusCode)
	}
	if n := mb.Stats().PasswordLogins; n != logins+1 {
		t.Fatalf("%d Metabase password logins after logging in as bob, want %d", n, logins+1)
	}
	if who := metabaseUser(t, alice, g.origin+"/dashboard/1", nil); who != "alice@example.test" {
		t.Fatalf("after logging in to Metabase as bob: Metabase sees %q, want alice", who)
	}
	waitFor(5*time.Second, func() bool { return len(mb.Sessions("bob@example.test")) == 0 })
	if n := len(mb.Sessions("bob@example.test")); n != 0 {
		t.Errorf("bob has %d Metabase sessions, want 0 (the dropped one ended)", n)
	}

	// Her own password: the session Metabase issued becomes the bound one.
	before := mb.Sessions("alice@example.test")
	if len(before) == 0 {
		t.Fatal("alice has no Metabase session before her own password login")
	}
	login("alice@example.test", "Alice-pass-1")
	if who := metabaseUser(t, alice, g.origin+"/dashboard/1", nil); who != "alice@example.test" {
		t.Fatalf("Metabase sees %q", who)
	}
	waitFor(5*time.Second, func() bool { return !slices.Contains(mb.Sessions("alice@example.test"), before[0]) })
	after := mb.Sessions("alice@example.test")
	if len(after) != 1 || after[0] == before[0] {
		t.Errorf("alice's Metabase sessions %v, want only the one Metabase issued (the old %s ended)", after, before[0])
	}
	if n := mb.Stats().SSOLogins; n != 1 {
		t.Errorf("%d SSO sign-ins, want 1: the issued session was bound, not replaced by a new sign-in", n)
	}
}
