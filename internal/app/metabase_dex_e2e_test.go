//go:build e2e

package app_test

// This file is the Dex end-to-end suite for metabase routes in mode jwt and
// mode broker (docs/metabase.md): users sign in to gatehouse through a real
// Dex (testenv.Dex) and land in the Metabase test double (metabasetest)
// signed in as themselves, with the groups Dex gives them. The same
// scenarios with the built-in provider are in metabase_test.go. Run with:
// go test -tags e2e -run MetabaseDex ./internal/app

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/metabase/metabasetest"
	"github.com/gatehouse-proxy/gatehouse/internal/testenv"
)

// metabaseDexModes are the metabase route modes that sign users in to
// Metabase; every test here runs once for each.
var metabaseDexModes = []string{"jwt", "broker"}

// metabaseDexWait bounds the wait for a Metabase session to end (gatehouse
// ends it on the back channel).
const metabaseDexWait = 5 * time.Second

// startMetabaseDex starts Dex with opts (gatehouse's client is added here),
// the Metabase test double for mode, and gatehouse with the provider "dex"
// and one metabase route in that mode for every signed-in user, mapping
// Dex's groups analysts and finance to Metabase's Analysts and Finance.
// session is YAML for identity.session, or "".
//
// mode jwt is an Enterprise Metabase with JWT SSO and group sync by name
// (as startMetabaseJWT); mode broker is the free edition with an admin API
// key (as startMetabaseBroker).
func startMetabaseDex(t *testing.T, mode string, opts testenv.DexOptions, session string) (*dexGatehouse, *metabasetest.Server) {
	t.Helper()
	var mb *metabasetest.Server
	var routeMetabase string
	switch mode {
	case "jwt":
		t.Setenv("GH_MB_JWT", metabaseJWTSecret)
		mb = metabasetest.New(t, metabasetest.Options{
			Edition: metabasetest.Enterprise, JWTEnabled: true, JWTSharedSecret: metabaseJWTSecret, JWTGroupSync: true,
		})
		routeMetabase = "{mode: jwt, jwt_secret: env:GH_MB_JWT, groups: {analysts: Analysts, finance: Finance}}"
	case "broker":
		const apiKey = "mb_test-only-dex-admin-api-key"
		t.Setenv("GH_MB_API_KEY", apiKey)
		t.Setenv("GH_MB_BROKER_KEY", "test-only-dex-broker-key-of-at-least-32-bytes!")
		mb = metabasetest.New(t, metabasetest.Options{
			APIKeys: []metabasetest.APIKey{{Name: "gatehouse", Key: apiKey, GroupID: metabasetest.AdministratorsGroupID}},
		})
		routeMetabase = "{mode: broker, api_key: env:GH_MB_API_KEY, broker_key: env:GH_MB_BROKER_KEY, groups: {analysts: Analysts, finance: Finance}}"
	default:
		t.Fatalf("unknown metabase mode %q", mode)
	}
	mb.AddGroup("Analysts")
	mb.AddGroup("Finance")

	g := startDexGatehouseWith(t, opts, session, fmt.Sprintf(`
upstreams:
  metabase: {targets: [%s]}
routes:
  - name: metabase
    upstream: metabase
    metabase: %s
    policy: {allow: [{name: signed-in, authenticated: true}]}
`, mb.URL, routeMetabase))
	return g, mb
}

// metabaseLogins is how many Metabase sessions gatehouse opened in mode:
// JWT SSO logins (jwt) or password logins (broker).
func metabaseLogins(mb *metabasetest.Server, mode string) int {
	if mode == "jwt" {
		return mb.Stats().SSOLogins
	}
	return mb.Stats().PasswordLogins
}

// metabaseGroups returns the Metabase groups of the user with email.
func metabaseGroups(t *testing.T, mb *metabasetest.Server, email string) []string {
	t.Helper()
	u, ok := mb.User(email)
	if !ok {
		t.Fatalf("no Metabase account for %s", email)
	}
	return u.GroupNames
}

// metabaseLogout POSTs gatehouse's logout from the same origin and returns
// the response (303, to Dex's end-session endpoint when Dex has sessions).
func (g *dexGatehouse) metabaseLogout(t *testing.T, c *http.Client) *http.Response {
	t.Helper()
	resp := post(t, c, g.origin+"/.gatehouse/logout", http.Header{
		"Origin": {g.origin}, "Sec-Fetch-Site": {"same-origin"},
	})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d, want 303", resp.StatusCode)
	}
	return resp
}

// TestMetabaseDexSignInLandsOnDashboard: a signed-out user opens a
// dashboard, is sent through Dex, signs in, and lands on that exact URL
// signed in to Metabase as themselves, with their mapped groups and one
// Metabase sign-in for several requests.
func TestMetabaseDexSignInLandsOnDashboard(t *testing.T) {
	for _, mode := range metabaseDexModes {
		t.Run(mode, func(t *testing.T) {
			alice, bob := dexAlice("analysts", "staff"), dexBob("finance")
			g, mb := startMetabaseDex(t, mode, testenv.DexOptions{Users: []testenv.DexUser{alice, bob}}, "")
			const page = "/dashboard/12?tab=2"
			for i, tc := range []struct {
				user      testenv.DexUser
				want, not string // a Metabase group the user must be in, and one they must not
			}{
				{alice, "Analysts", "Finance"},
				{bob, "Finance", "Analysts"},
			} {
				c := browser(t)
				// signIn checks the redirect goes to Dex's /auth and that
				// the callback sends the browser back to page exactly.
				g.signIn(t, c, page, tc.user)
				for range 3 {
					resp := fetch(t, c, g.origin+page, nil)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("%s on %s after sign-in: %d, want 200", tc.user.Email, page, resp.StatusCode)
					}
					if who := resp.Header.Get(metabasetest.UserHeader); who != tc.user.Email {
						t.Fatalf("%s's browser on %s: Metabase sees %q", tc.user.Email, page, who)
					}
					if body := readBody(resp); !strings.Contains(body, `<p id="path">/dashboard/12</p>`) {
						t.Errorf("%s on %s: Metabase served another page:\n%s", tc.user.Email, page, body)
					}
					if sc := strings.Join(resp.Header.Values("Set-Cookie"), "; "); strings.Contains(sc, metabasetest.SessionCookie+"=") {
						t.Errorf("response to the browser sets %s: %q", metabasetest.SessionCookie, sc)
					}
				}
				if n := metabaseLogins(mb, mode); n != i+1 {
					t.Errorf("%d Metabase sign-ins after %d users made three requests each, want %d (one per session)", n, i+1, i+1)
				}
				u, ok := mb.User(tc.user.Email)
				if !ok {
					t.Fatalf("no Metabase account for %s", tc.user.Email)
				}
				if !slices.Contains(u.GroupNames, tc.want) || slices.Contains(u.GroupNames, tc.not) || slices.Contains(u.GroupNames, "Administrators") {
					t.Errorf("%s's Metabase groups %v: want %s, not %s, not Administrators", tc.user.Email, u.GroupNames, tc.want, tc.not)
				}
				if mode == "jwt" && u.SSOSource != "jwt" {
					t.Errorf("%s's sso_source %q, want jwt", tc.user.Email, u.SSOSource)
				}
				if mode == "broker" && !u.Active {
					t.Errorf("%s's brokered account is not active", tc.user.Email)
				}
				if n := len(mb.Sessions(tc.user.Email)); n != 1 {
					t.Errorf("%s has %d Metabase sessions, want 1", tc.user.Email, n)
				}
				noMetabaseCookie(t, c, g.origin)
			}
		})
	}
}

// TestMetabaseDexGroupChangeFollowsRefresh changes bob's groups at Dex while
// he is signed in (a restart with persistent storage and without sessions,
// see TestDexRefreshPicksUpChangedGroups). The next request refreshes, and
// since Metabase applies groups only at sign-in, gatehouse ends the Metabase
// session and opens a new one with the new groups; a refresh that changes
// nothing keeps the session.
func TestMetabaseDexGroupChangeFollowsRefresh(t *testing.T) {
	for _, mode := range metabaseDexModes {
		t.Run(mode, func(t *testing.T) {
			opts := testenv.DexOptions{
				Users:           []testenv.DexUser{dexBob("staff")},
				IDTokenTTL:      time.Minute, // Dex's access tokens live as long
				DisableSessions: true,
				Persistent:      true,
			}
			// refresh_before above the token lifetime: every request refreshes.
			g, mb := startMetabaseDex(t, mode, opts, "{refresh_before: 59m}")
			bob := browser(t)
			g.signIn(t, bob, "/dashboard/3", dexBob())
			for range 3 {
				if who := metabaseUser(t, bob, g.origin+"/dashboard/3", nil); who != "bob@example.test" {
					t.Fatalf("Metabase sees %q, want bob@example.test", who)
				}
			}
			if n := strings.Count(g.log.String(), "session refreshed"); n < 3 {
				t.Errorf("%d refreshes logged for three requests, want every request to refresh", n)
			}
			if n := metabaseLogins(mb, mode); n != 1 {
				t.Fatalf("%d Metabase sign-ins across refreshes with the same groups, want 1", n)
			}
			if gs := metabaseGroups(t, mb, "bob@example.test"); slices.Contains(gs, "Analysts") {
				t.Fatalf("bob in Analysts before the change: %v", gs)
			}

			// step changes bob's groups at Dex and checks that the next
			// request reaches Metabase as bob in a new session with the new
			// groups, and that the old session ended.
			step := func(groups []string, logins int, in, out string) {
				t.Helper()
				old := mb.Sessions("bob@example.test")
				if len(old) != 1 {
					t.Fatalf("bob has Metabase sessions %v before the change to %v, want 1", old, groups)
				}
				refreshes := strings.Count(g.log.String(), "session refreshed")
				o := g.dexOpts
				o.Users = []testenv.DexUser{dexBob(groups...)}
				g.dex.Restart(t, o)

				if who := metabaseUser(t, bob, g.origin+"/dashboard/3", nil); who != "bob@example.test" {
					t.Fatalf("after the change to %v Metabase sees %q", groups, who)
				}
				if n := strings.Count(g.log.String(), "session refreshed"); n <= refreshes {
					t.Errorf("no refresh logged after Dex's restart (%d before, %d after)", refreshes, n)
				}
				if n := metabaseLogins(mb, mode); n != logins {
					t.Errorf("%d Metabase sign-ins after the change to %v, want %d (a new session for the new groups)", n, groups, logins)
				}
				gs := metabaseGroups(t, mb, "bob@example.test")
				if in != "" && !slices.Contains(gs, in) {
					t.Errorf("bob's Metabase groups after the change to %v: %v, want %s", groups, gs, in)
				}
				if out != "" && slices.Contains(gs, out) {
					t.Errorf("bob's Metabase groups after the change to %v: %v, want not %s", groups, gs, out)
				}
				if !waitEvery(metabaseDexWait, 200*time.Millisecond, func() bool { return !slices.Contains(mb.Sessions("bob@example.test"), old[0]) }) {
					t.Errorf("the Metabase session opened with the old groups is still alive %v after the change to %v", metabaseDexWait, groups)
				}
				now := mb.Sessions("bob@example.test")
				if len(now) != 1 || now[0] == old[0] {
					t.Errorf("bob's Metabase sessions after the change to %v: %v, want one new session (old %s)", groups, now, old[0])
				}
				// The new session stays: another request refreshes with the
				// same groups and signs in to Metabase no more.
				if who := metabaseUser(t, bob, g.origin+"/dashboard/3", nil); who != "bob@example.test" {
					t.Fatalf("second request after the change: Metabase sees %q", who)
				}
				if n := metabaseLogins(mb, mode); n != logins {
					t.Errorf("%d Metabase sign-ins after a refresh with unchanged groups, want %d", n, logins)
				}
			}
			step([]string{"staff", "analysts"}, 2, "Analysts", "")
			step([]string{"staff"}, 3, "", "Analysts")
			noMetabaseCookie(t, bob, g.origin)
		})
	}
}

// TestMetabaseDexLogoutEndsMetabaseSession: logout at gatehouse deletes the
// bound Metabase session and ends the gatehouse session.
func TestMetabaseDexLogoutEndsMetabaseSession(t *testing.T) {
	for _, mode := range metabaseDexModes {
		t.Run(mode, func(t *testing.T) {
			alice := dexAlice("analysts")
			g, mb := startMetabaseDex(t, mode, testenv.DexOptions{Users: []testenv.DexUser{alice}}, "")
			c := browser(t)
			g.signIn(t, c, "/dashboard/1", alice)
			if who := metabaseUser(t, c, g.origin+"/dashboard/1", nil); who != alice.Email {
				t.Fatalf("Metabase sees %q, want %s", who, alice.Email)
			}
			if n := len(mb.Sessions(alice.Email)); n != 1 {
				t.Fatalf("alice has %d Metabase sessions before logout, want 1", n)
			}
			old := g.sessionCookie(t, c)

			resp := g.metabaseLogout(t, c)
			if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, g.dex.Issuer+"/logout") {
				t.Errorf("logout redirects to %q, want Dex's end-session endpoint %s/logout", loc, g.dex.Issuer)
			}
			start := time.Now()
			if !waitEvery(metabaseDexWait, 200*time.Millisecond, func() bool { return len(mb.Sessions(alice.Email)) == 0 }) {
				t.Fatalf("alice has Metabase sessions %v %v after logout, want none", mb.Sessions(alice.Email), metabaseDexWait)
			}
			t.Logf("Metabase session ended %v after logout", time.Since(start).Round(time.Millisecond))
			if n := mb.Stats().SessionDeletions; n != 1 {
				t.Errorf("%d Metabase session deletions, want 1", n)
			}
			if code := g.withCookie(t, "/dashboard/1", old); code != http.StatusFound {
				t.Errorf("the old gatehouse cookie after logout: %d, want 302 to sign in", code)
			}
			if resp := fetch(t, c, g.origin+"/dashboard/1", nil); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), g.dex.Issuer+"/auth") {
				t.Errorf("after logout: %d to %q, want 302 to Dex", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

// TestMetabaseDexStaleSessionActsAsNewUser: a browser that kept alice's
// metabase.SESSION (still live: alice is signed in elsewhere) and now
// belongs to bob acts as bob in Metabase, and a forged metabase.SESSION or
// X-Metabase-Session is dropped.
func TestMetabaseDexStaleSessionActsAsNewUser(t *testing.T) {
	for _, mode := range metabaseDexModes {
		t.Run(mode, func(t *testing.T) {
			alice, bob := dexAlice("analysts"), dexBob("finance")
			g, mb := startMetabaseDex(t, mode, testenv.DexOptions{Users: []testenv.DexUser{alice, bob}}, "")
			originURL, _ := url.Parse(g.origin)

			// alice uses Metabase in two browsers: shared (which bob will
			// use next) and her own (whose session stays live).
			shared, own := browser(t), browser(t)
			g.signIn(t, shared, "/dashboard/1", alice)
			metabaseUser(t, shared, g.origin+"/dashboard/1", nil)
			sharedKeys := mb.Sessions(alice.Email)
			g.signIn(t, own, "/dashboard/1", alice)
			metabaseUser(t, own, g.origin+"/dashboard/1", nil)
			keys := mb.Sessions(alice.Email)
			if len(sharedKeys) != 1 || len(keys) != 2 {
				t.Fatalf("alice's Metabase sessions: %v, then %v; want one per browser", sharedKeys, keys)
			}
			live := keys[0]
			if live == sharedKeys[0] {
				live = keys[1]
			}
			// The key is alice's and live: Metabase itself, asked directly,
			// sees alice with it.
			if who := metabaseUser(t, client(), mb.URL+"/dashboard/1", http.Header{"Cookie": {metabasetest.SessionCookie + "=" + live}}); who != alice.Email {
				t.Fatalf("alice's Metabase session, asked directly: Metabase sees %q", who)
			}

			// alice signs out of the shared browser, at gatehouse and at Dex.
			resp := g.metabaseLogout(t, shared)
			if resp = fetch(t, shared, resp.Header.Get("Location"), nil); resp.StatusCode != http.StatusFound ||
				!strings.HasPrefix(resp.Header.Get("Location"), g.origin+"/.gatehouse/logged-out") {
				t.Fatalf("Dex logout: %d to %q, want 302 to gatehouse's signed-out page", resp.StatusCode, resp.Header.Get("Location"))
			}
			// The shared browser kept a metabase.SESSION of alice's (as
			// from before gatehouse): her live one.
			shared.Jar.SetCookies(originURL, []*http.Cookie{{Name: metabasetest.SessionCookie, Value: live, Path: "/"}})

			// bob signs in on the shared browser through Dex (a password:
			// alice's Dex session ended).
			g.signIn(t, shared, "/dashboard/2", bob)
			stale := http.Header{"X-Metabase-Session": {live}}
			if who := metabaseUser(t, shared, g.origin+"/dashboard/2", stale); who != bob.Email {
				t.Fatalf("the shared browser with alice's metabase.SESSION, now bob's: Metabase sees %q, want %s", who, bob.Email)
			}
			api := http.Header{"Accept": {"application/json"}, "X-Metabase-Session": {live}}
			if resp := fetch(t, shared, g.origin+"/api/user/current", api); resp.StatusCode != http.StatusOK ||
				!strings.Contains(readBody(resp), bob.Email) {
				t.Errorf("/api/user/current on the shared browser: %d, want 200 as %s", resp.StatusCode, bob.Email)
			}
			for _, forged := range []http.Header{
				{"Cookie": {metabasetest.SessionCookie + "=00000000-0000-0000-0000-000000000000"}},
				{"X-Metabase-Session": {"11111111-1111-1111-1111-111111111111"}},
				{"Cookie": {metabasetest.SessionCookie + "=not-a-uuid"}},
			} {
				c := browser(t)
				c.Jar.SetCookies(originURL, shared.Jar.Cookies(originURL))
				if who := metabaseUser(t, c, g.origin+"/dashboard/2", forged); who != bob.Email {
					t.Errorf("bob with forged %v: Metabase sees %q", forged, who)
				}
			}
			if n := len(mb.Sessions(bob.Email)); n != 1 {
				t.Errorf("bob has %d Metabase sessions, want 1", n)
			}
			if gs := metabaseGroups(t, mb, bob.Email); !slices.Contains(gs, "Finance") || slices.Contains(gs, "Analysts") {
				t.Errorf("bob's Metabase groups %v, want Finance and not alice's Analysts", gs)
			}

			// alice's own browser and session are untouched.
			if who := metabaseUser(t, own, g.origin+"/dashboard/1", nil); who != alice.Email {
				t.Errorf("alice's own browser: Metabase sees %q", who)
			}
			if !slices.Contains(mb.Sessions(alice.Email), live) {
				t.Errorf("alice's live Metabase session %s ended because bob's browser sent it", live)
			}
		})
	}
}

// TestMetabaseDexPublicPathsSignedOut: Metabase's public paths answer
// without signing in to gatehouse (no trip to Dex, no Metabase sign-in);
// everything else sends the browser to Dex.
func TestMetabaseDexPublicPathsSignedOut(t *testing.T) {
	for _, mode := range metabaseDexModes {
		t.Run(mode, func(t *testing.T) {
			g, mb := startMetabaseDex(t, mode, testenv.DexOptions{Users: []testenv.DexUser{dexAlice("analysts")}}, "")
			c := browser(t)
			for _, p := range []string{"/public/x", "/public/dashboard/abc", "/api/health", "/api/public/card/abc", "/embed/question/x", "/app/app.js", "/favicon.ico", "/api/session/properties"} {
				if resp := fetch(t, c, g.origin+p, nil); resp.StatusCode != http.StatusOK {
					t.Errorf("%s signed out: %d, want 200", p, resp.StatusCode)
				}
			}
			if resp := fetch(t, c, g.origin+"/dashboard/12?tab=2", nil); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), g.dex.Issuer+"/auth") {
				t.Errorf("/dashboard/12 signed out: %d to %q, want 302 to Dex", resp.StatusCode, resp.Header.Get("Location"))
			}
			if s := mb.Stats(); s.SSOLogins+s.PasswordLogins != 0 {
				t.Errorf("signed-out requests signed someone in to Metabase: %+v", s)
			}
			if u, ok := mb.User("alice@example.test"); ok {
				t.Errorf("signed-out requests made a Metabase account: %+v", u)
			}
		})
	}
}

// readBody returns the body fetch buffered.
func readBody(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
