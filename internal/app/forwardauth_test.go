package app_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// forwardAuth asks g's forward-auth endpoint about a request, as nginx's
// auth_request or Traefik's forwardAuth would, with the client's cookies
// from c's jar.
func forwardAuth(t *testing.T, g *identityGatehouse, c *http.Client, method, uri string, hdr http.Header) *http.Response {
	t.Helper()
	h := http.Header{
		"X-Forwarded-Method": {method},
		"X-Forwarded-Host":   {strings.TrimPrefix(g.origin, "http://")},
		"X-Forwarded-Uri":    {uri},
		"X-Forwarded-Proto":  {"http"},
		"X-Forwarded-For":    {"198.51.100.20"},
	}
	for k, v := range hdr {
		h[k] = v
	}
	u, _ := url.Parse(g.origin)
	if c != nil {
		var parts []string
		for _, ck := range c.Jar.Cookies(u) {
			parts = append(parts, ck.Name+"="+ck.Value)
		}
		if len(parts) > 0 {
			h.Set("Cookie", strings.Join(parts, "; "))
		}
	}
	return fetch(t, client(), g.origin+"/.gatehouse/auth", h)
}

func TestForwardAuthAnswersWithTheProxysDecision(t *testing.T) {
	g := startIdentity(t, spoeExtra)
	alice := browser(t)
	g.signIn(t, alice, "/analytics", "alice", "wonderland")
	bob := browser(t)
	g.signIn(t, bob, "/", "bob", "builder")

	resp := forwardAuth(t, g, alice, "GET", "/analytics/report?id=7", http.Header{"X-Request-Id": {"fa-alice-1"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice: status %d, want 200", resp.StatusCode)
	}
	if resp.Header.Get("X-Gatehouse-Email") != "alice@example.test" || !strings.Contains(resp.Header.Get("X-Gatehouse-Groups"), "analysts") {
		t.Errorf("alice's identity headers: %v", resp.Header)
	}
	if c := verifyAssertion(t, g.origin, resp.Header.Get("X-Gatehouse-Assertion")); c["email"] != "alice@example.test" {
		t.Errorf("assertion email %v", c["email"])
	}
	// The Cookie header for the app, without the session cookie.
	if v, ok := resp.Header["X-Gatehouse-Cookie"]; !ok || len(v) != 1 || v[0] != "" {
		t.Errorf("X-Gatehouse-Cookie = %q, want present and empty (the jar holds only gatehouse's cookie)", v)
	}

	resp = forwardAuth(t, g, bob, "GET", "/analytics", http.Header{"X-Request-Id": {"fa-bob-1"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob on /analytics: %d, want 403", resp.StatusCode)
	}
	// POST is judged as POST: an API-style 401 for the anonymous.
	resp = forwardAuth(t, g, nil, "POST", "/analytics", nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("anonymous POST: %d %q, want 401 with a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// A browser is sent to sign in, back to the page it wanted.
	resp = forwardAuth(t, g, nil, "GET", "/analytics?tab=2", http.Header{"X-Request-Id": {"fa-anon-1"}})
	want := g.origin + "/.gatehouse/login?rd=" + url.QueryEscape("/analytics?tab=2")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Errorf("anonymous browser: %d to %q, want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	// nginx accepts only 2xx, 401 and 403: redirect=false gives a 401
	// with the same Location.
	resp = fetch(t, client(), g.origin+"/.gatehouse/auth?redirect=false", http.Header{
		"X-Forwarded-Host": {strings.TrimPrefix(g.origin, "http://")}, "X-Original-URL": {g.origin + "/analytics"},
	})
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") == "" {
		t.Errorf("redirect=false: %d %q, want 401 with Location", resp.StatusCode, resp.Header.Get("Location"))
	}

	for id, want := range map[string]string{"fa-alice-1": "allow", "fa-bob-1": "deny", "fa-anon-1": "redirect"} {
		r := g.record(id)
		if r.Decision != want || r.Via != "forward-auth" || r.ClientIP != "198.51.100.20" || r.Path == "/.gatehouse/auth" {
			t.Errorf("%s: audit %+v, want %s via forward-auth for 198.51.100.20 on the original path", id, r, want)
		}
	}
}

// TestForwardAuthIgnoresCallersOutsideTrustedProxies: an X-Forwarded-Uri
// from anyone but a configured proxy would let a client ask about one path
// and use another; such callers get 403.
func TestForwardAuthIgnoresCallersOutsideTrustedProxies(t *testing.T) {
	g := startIdentity(t, `
forward_auth: true
trusted_proxies: [10.0.0.0/8]
`)
	alice := browser(t)
	g.signIn(t, alice, "/analytics", "alice", "wonderland")
	resp := forwardAuth(t, g, alice, "GET", "/analytics", nil)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Gatehouse-User") != "" {
		t.Fatalf("untrusted caller: %d with user %q, want 403 and no identity", resp.StatusCode, resp.Header.Get("X-Gatehouse-User"))
	}
}

// TestForwardAuthRefusesNonCanonicalPath: the front end forwards the path
// as sent, so a dot-segment or double-slash spelling could reach the app
// as a different path than the one checked; it is refused.
func TestForwardAuthRefusesNonCanonicalPath(t *testing.T) {
	g := startIdentity(t, spoeExtra)
	alice := browser(t)
	g.signIn(t, alice, "/analytics", "alice", "wonderland")
	for i, uri := range []string{"/public/../analytics", "/public//x", "/public/%2e%2e/analytics", "/public/..%2Fanalytics"} {
		hdr := http.Header{"X-Request-Id": {fmt.Sprintf("fa-noncanon-%d", i)}}
		if resp := forwardAuth(t, g, alice, "GET", uri, hdr); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", uri, resp.StatusCode)
		}
	}
	if resp := forwardAuth(t, g, nil, "GET", "/public/x", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/public/x: %d, want 200", resp.StatusCode)
	}
	// Missing original request: 400, not a decision about /.gatehouse/auth.
	resp := fetch(t, client(), g.origin+"/.gatehouse/auth", nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no X-Forwarded-Host/Uri: %d, want 400", resp.StatusCode)
	}
	// The audit record says what the client got, not what the check
	// would have allowed.
	if r := g.record("fa-noncanon-0"); r.Status != http.StatusBadRequest || r.Decision != "deny" || r.Auth != "" {
		t.Errorf("audit of a refused non-canonical path: %+v, want status 400, deny, no identity", r)
	}
}
