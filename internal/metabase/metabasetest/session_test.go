package metabasetest

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPasswordLoginCookies pins 2.4: 200 {"id"} with metabase.SESSION (no
// Max-Age unless remember) and metabase.TIMEOUT.
func TestPasswordLoginCookies(t *testing.T) {
	s := New(t, Options{})
	r := do(t, s, req{method: http.MethodPost, path: "/api/session",
		body: map[string]any{"username": SetupAdminEmail, "password": SetupAdminPassword}})
	wantStatus(t, r, http.StatusOK)
	key := decode[map[string]string](t, r)["id"]
	c := r.cookie(t, SessionCookie)
	if !validUUID(key) || c == nil || c.Value != key || !c.HttpOnly || c.MaxAge != 0 || c.Path != "/" {
		t.Errorf("id %q, cookie %+v", key, c)
	}
	if r.cookie(t, TimeoutCookie) == nil {
		t.Error("no metabase.TIMEOUT")
	}
	r = do(t, s, req{method: http.MethodPost, path: "/api/session",
		body: map[string]any{"username": SetupAdminEmail, "password": SetupAdminPassword, "remember": true}})
	wantStatus(t, r, http.StatusOK)
	if c := r.cookie(t, SessionCookie); c.MaxAge != 1209600 {
		t.Errorf("remember: Max-Age %d, want 1209600", c.MaxAge)
	}
	for _, body := range []map[string]any{{"username": "", "password": "x"}, {"username": SetupAdminEmail}} {
		wantStatus(t, do(t, s, req{method: http.MethodPost, path: "/api/session", body: body}), http.StatusBadRequest)
	}
	r = do(t, s, req{method: http.MethodPost, path: "/api/session", body: map[string]any{"username": SetupAdminEmail, "password": "wrong"}})
	wantStatus(t, r, http.StatusUnauthorized)
	if got := decode[map[string]map[string]string](t, r)["errors"]["password"]; got != "did not match stored password" {
		t.Errorf("errors.password = %q", got)
	}
	if st := s.Stats(); st.PasswordLogins != 2 || st.FailedLogins != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// TestSessionLookupOrder pins 2.1: cookie, then X-Metabase-Session; a UUID
// cookie wins over the header even when it names no session; a non-UUID
// cookie is ignored; no session is 401 "Unauthenticated".
func TestSessionLookupOrder(t *testing.T) {
	s := New(t, Options{})
	key := passwordLogin(t, s, SetupAdminEmail, SetupAdminPassword)
	for _, tc := range []struct {
		name    string
		header  map[string]string
		cookies []*http.Cookie
		status  int
	}{
		{"cookie", nil, sessionCookie(key), http.StatusOK},
		{"header", map[string]string{"X-Metabase-Session": key}, nil, http.StatusOK},
		{"stale UUID cookie wins over header", map[string]string{"X-Metabase-Session": key}, sessionCookie(randomUUID()), http.StatusUnauthorized},
		{"non-UUID cookie ignored", map[string]string{"X-Metabase-Session": key}, sessionCookie("forged"), http.StatusOK},
		{"nothing", nil, nil, http.StatusUnauthorized},
		{"unknown header", map[string]string{"X-Metabase-Session": randomUUID()}, nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, s, req{path: "/api/user/current", header: tc.header, cookies: tc.cookies})
			wantStatus(t, r, tc.status)
			if tc.status == http.StatusUnauthorized && r.body != "Unauthenticated" {
				t.Errorf("body %q", r.body)
			}
		})
	}
}

// TestTimeoutCookieReissued pins 2.1: metabase.TIMEOUT comes back on each
// request that had a valid session cookie, and not for header sessions.
func TestTimeoutCookieReissued(t *testing.T) {
	s := New(t, Options{})
	key := passwordLogin(t, s, SetupAdminEmail, SetupAdminPassword)
	if r := do(t, s, req{path: "/api/user/current", cookies: sessionCookie(key)}); r.cookie(t, TimeoutCookie) == nil {
		t.Error("no metabase.TIMEOUT with a session cookie")
	}
	if r := do(t, s, req{path: "/dashboard/1", cookies: sessionCookie(key)}); r.cookie(t, TimeoutCookie) == nil {
		t.Error("no metabase.TIMEOUT on the app page")
	}
	if r := do(t, s, req{path: "/api/user/current", header: map[string]string{"X-Metabase-Session": key}}); r.cookie(t, TimeoutCookie) != nil {
		t.Error("metabase.TIMEOUT with a header session")
	}
}

// TestDeleteSession pins 2.4: 204 and cleared cookies, then the session is
// dead; 404 with no key or a gone session.
func TestDeleteSession(t *testing.T) {
	s := New(t, Options{})
	key := passwordLogin(t, s, SetupAdminEmail, SetupAdminPassword)
	r := do(t, s, req{method: http.MethodDelete, path: "/api/session", cookies: sessionCookie(key)})
	wantStatus(t, r, http.StatusNoContent)
	for _, name := range []string{SessionCookie, "metabase.EMBEDDED_SESSION", TimeoutCookie} {
		c := r.cookie(t, name)
		if c == nil || c.Value != "" || c.Path != "/" || !c.Expires.Equal(time.Unix(0, 0)) {
			t.Errorf("%s not cleared: %+v", name, c)
		}
	}
	if currentEmail(t, s, key) != "" {
		t.Error("deleted session still works")
	}
	wantStatus(t, do(t, s, req{method: http.MethodDelete, path: "/api/session", cookies: sessionCookie(key)}), http.StatusNotFound)
	wantStatus(t, do(t, s, req{method: http.MethodDelete, path: "/api/session"}), http.StatusNotFound)
	key2 := passwordLogin(t, s, SetupAdminEmail, SetupAdminPassword)
	wantStatus(t, do(t, s, req{method: http.MethodDelete, path: "/api/session", header: map[string]string{"X-Metabase-Session": key2}}), http.StatusNoContent)
	if st := s.Stats(); st.SessionDeletions != 2 {
		t.Errorf("SessionDeletions = %d, want 2", st.SessionDeletions)
	}
}

// TestSessionMaxAgeIsAbsolute pins 2.3: a session dies MAX_SESSION_AGE after
// creation, however often it is used.
func TestSessionMaxAgeIsAbsolute(t *testing.T) {
	clock := newClock()
	s := New(t, Options{Now: clock.Now, MaxSessionAge: time.Hour})
	key := passwordLogin(t, s, SetupAdminEmail, SetupAdminPassword)
	for range 3 {
		clock.Advance(20*time.Minute - time.Second)
		if currentEmail(t, s, key) == "" {
			t.Fatal("session died early")
		}
	}
	clock.Advance(4 * time.Second)
	if currentEmail(t, s, key) != "" {
		t.Error("session outlived MAX_SESSION_AGE")
	}
	if len(s.Sessions(SetupAdminEmail)) != 0 {
		t.Error("Sessions lists an expired session")
	}
}

// TestLoginThrottlePerUsername pins 2.4: after 10 failures even the right
// password is refused until the delay passes.
func TestLoginThrottlePerUsername(t *testing.T) {
	clock := newClock()
	s := New(t, Options{Now: clock.Now})
	login := func(pw string) response {
		return do(t, s, req{method: http.MethodPost, path: "/api/session", body: map[string]any{"username": SetupAdminEmail, "password": pw}})
	}
	for range 10 {
		wantStatus(t, login("wrong"), http.StatusUnauthorized)
	}
	r := login(SetupAdminPassword)
	wantStatus(t, r, http.StatusUnauthorized)
	if got := decode[map[string]map[string]string](t, r)["errors"]["username"]; !strings.HasPrefix(got, "Too many attempts! You must wait 15 seconds") {
		t.Errorf("errors.username = %q", got)
	}
	clock.Advance(15 * time.Second)
	wantStatus(t, login(SetupAdminPassword), http.StatusOK)
	clock.Advance(time.Hour)
	for range 9 {
		wantStatus(t, login("wrong"), http.StatusUnauthorized)
	}
	wantStatus(t, login(SetupAdminPassword), http.StatusOK)
}

// TestLoginThrottlePerIP pins 2.4 and 6.2: 50 failures from one client IP
// (first X-Forwarded-For address) lock that IP out, not others.
func TestLoginThrottlePerIP(t *testing.T) {
	s := New(t, Options{Now: newClock().Now})
	s.AddUser(NewUser{Email: "ana@example.com", Password: "ana-pass-1"})
	login := func(user, pw, xff string) response {
		return do(t, s, req{method: http.MethodPost, path: "/api/session", header: map[string]string{"X-Forwarded-For": xff},
			body: map[string]any{"username": user, "password": pw}})
	}
	for i := range 50 {
		wantStatus(t, login("nobody"+itoa(i)+"@example.com", "x", "203.0.113.7, 10.0.0.1"), http.StatusUnauthorized)
	}
	r := login("ana@example.com", "ana-pass-1", "203.0.113.7")
	wantStatus(t, r, http.StatusUnauthorized)
	if !strings.Contains(r.body, "Too many attempts") {
		t.Errorf("body %q", r.body)
	}
	wantStatus(t, login("ana@example.com", "ana-pass-1", "198.51.100.9"), http.StatusOK)
}

// TestPasswordChangeKillsSessions pins 0B, 2.3 and 3.3.
func TestPasswordChangeKillsSessions(t *testing.T) {
	s := New(t, Options{APIKeys: []APIKey{{Name: "gatehouse", Key: "mb_admin", GroupID: AdministratorsGroupID}}})
	ana := s.AddUser(NewUser{Email: "ana@example.com", Password: "ana-pass-1"})
	k1, k2 := passwordLogin(t, s, "ana@example.com", "ana-pass-1"), passwordLogin(t, s, "ana@example.com", "ana-pass-1")
	if len(s.Sessions("ana@example.com")) != 2 {
		t.Fatal("want two sessions")
	}
	api := map[string]string{"X-Api-Key": "mb_admin"}
	path := "/api/user/" + itoa(ana.ID) + "/password"
	wantStatus(t, do(t, s, req{method: http.MethodPut, path: path, header: api, body: map[string]string{"password": "short"}}), http.StatusBadRequest)
	r := do(t, s, req{method: http.MethodPut, path: path, header: api, body: map[string]string{"password": "new-pass-2"}})
	if r.StatusCode/100 != 2 || r.cookie(t, SessionCookie) != nil {
		t.Fatalf("admin password set: %d, cookies %v", r.StatusCode, r.Header.Values("Set-Cookie"))
	}
	if currentEmail(t, s, k1) != "" || currentEmail(t, s, k2) != "" {
		t.Error("sessions survived the password change")
	}
	wantStatus(t, do(t, s, req{method: http.MethodPost, path: "/api/session", body: map[string]any{"username": "ana@example.com", "password": "ana-pass-1"}}), http.StatusUnauthorized)

	// The caller changing its own password gets a new session.
	k3 := passwordLogin(t, s, "ana@example.com", "new-pass-2")
	r = do(t, s, req{method: http.MethodPut, path: path, cookies: sessionCookie(k3), body: map[string]string{"password": "newer-pass-3", "old_password": "new-pass-2"}})
	wantStatus(t, r, http.StatusOK)
	body := decode[map[string]any](t, r)
	if body["success"] != true || body["session_id"] == k3 || currentEmail(t, s, body["session_id"].(string)) != "ana@example.com" || currentEmail(t, s, k3) != "" {
		t.Errorf("self change: %v", body)
	}

	// Forgot password, out of band: every session dies, the old password fails.
	if err := s.ChangePasswordOutOfBand("ana@example.com", "taken-over-4"); err != nil {
		t.Fatal(err)
	}
	if len(s.Sessions("ana@example.com")) != 0 {
		t.Error("out-of-band change kept sessions")
	}
	wantStatus(t, do(t, s, req{method: http.MethodPost, path: "/api/session", body: map[string]any{"username": "ana@example.com", "password": "newer-pass-3"}}), http.StatusUnauthorized)
}

// TestHealth pins 2.4: 200 {"status":"ok"}, 503 while initializing, when
// every other /api/* call is 503 too.
func TestHealth(t *testing.T) {
	s := New(t, Options{})
	r := do(t, s, req{path: "/api/health"})
	wantStatus(t, r, http.StatusOK)
	if decode[map[string]any](t, r)["status"] != "ok" {
		t.Errorf("body %q", r.body)
	}
	s.SetInitializing(true)
	r = do(t, s, req{path: "/api/health"})
	wantStatus(t, r, http.StatusServiceUnavailable)
	if decode[map[string]any](t, r)["status"] != "initializing" {
		t.Errorf("body %q", r.body)
	}
	wantStatus(t, do(t, s, req{method: http.MethodPost, path: "/api/session", body: map[string]any{"username": SetupAdminEmail, "password": SetupAdminPassword}}), http.StatusServiceUnavailable)
	s.SetInitializing(false)
	wantStatus(t, do(t, s, req{path: "/api/health"}), http.StatusOK)
}

// TestAppPageShowsItsUser proves a session key reaches only its own user,
// and pins section 4's routes: the SPA needs a session, public paths do not.
func TestAppPageShowsItsUser(t *testing.T) {
	s, clock := jwtServer(t, nil)
	alice := ssoLogin(t, s, clock, claimsFor(clock, "alice@example.com"))
	bob := ssoLogin(t, s, clock, claimsFor(clock, "bob@example.com"))
	for key, want := range map[string]string{alice: "alice@example.com", bob: "bob@example.com"} {
		r := do(t, s, req{path: "/dashboard/12", cookies: sessionCookie(key)})
		wantStatus(t, r, http.StatusOK)
		if r.Header.Get(UserHeader) != want || !strings.Contains(r.body, want) {
			t.Errorf("app page shows %q, want %q", r.Header.Get(UserHeader), want)
		}
	}
	r := do(t, s, req{path: "/dashboard/12?tab=1"})
	wantStatus(t, r, http.StatusFound)
	if got := r.Header.Get("Location"); got != "/auth/login?redirect=%2Fdashboard%2F12%3Ftab%3D1" {
		t.Errorf("Location = %q", got)
	}
	r = do(t, s, req{path: "/auth/login?redirect=%2Fdashboard%2F12"})
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `href="/auth/sso?redirect=%2Fdashboard%2F12"`) {
		t.Errorf("login page lacks the SSO link: %s", r.body)
	}
	for _, p := range []string{"/public/dashboard/0b5a", "/embed/dashboard/tok", "/api/public/card/x", "/api/embed/card/x", "/app/app.js", "/favicon.ico", "/api/session/properties"} {
		wantStatus(t, do(t, s, req{path: p}), http.StatusOK)
	}
	wantStatus(t, do(t, s, req{path: "/app/missing.js"}), http.StatusNotFound)
	oss := New(t, Options{})
	if r := do(t, oss, req{path: "/auth/login"}); strings.Contains(r.body, "/auth/sso") {
		t.Error("OSS login page offers SSO")
	}
}
