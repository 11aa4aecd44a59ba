package app_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/internal/testenv"
)

// startMetabaseRoute is gatehouse with the built-in provider in front of an
// echo upstream on a metabase route (two: /api-clients allows Metabase's
// own API credentials, / does not).
func startMetabaseRoute(t *testing.T) *identityGatehouse {
	t.Helper()
	up := newEcho(t)
	port := testenv.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	g := start(t, fmt.Sprintf(`
listeners: [{name: public, address: "127.0.0.1:%d"}]
public_url: %s
admin: {address: 127.0.0.1:0}
identity:
  builtin: {demo_users: true}
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
`, port, origin, up.URL))
	return &identityGatehouse{gatehouse: g, origin: origin}
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
	if resp.StatusCode != http.StatusOK || e.Header.Get("X-Api-Key") != "mb_script_key" {
		t.Fatalf("script with x-api-key: %d, app saw x-api-key %q", resp.StatusCode, e.Header.Get("X-Api-Key"))
	}
	if u := e.Header.Get("X-Gatehouse-User"); u != "" {
		t.Errorf("identity header %q reached the app for an API client", u)
	}
	if r := g.record(id); r.Reason != "app-credential" || r.Decision != "allow" || r.Auth != "" {
		t.Errorf("audit: %+v, want allow app-credential without auth method", r)
	}
}
