package metabasetest

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

// TestSSOCookiesAndRedirect pins 1.7 and 2.1: 302 to return_to exactly as
// given, metabase.SESSION without Max-Age, metabase.TIMEOUT not HttpOnly,
// metabase.DEVICE for 20 years with SameSite=None; Secure over https.
func TestSSOCookiesAndRedirect(t *testing.T) {
	s, clock := jwtServer(t, nil)
	claims := claimsFor(clock, "ana@example.com")
	claims["region"] = "EU"
	claims["level"] = 3
	claims["tags"] = []string{"dropped"}
	tok := sign(t, []byte(testSecret), hs256, claims)
	r := do(t, s, req{path: "/auth/sso?jwt=" + tok + "&return_to=%2Fdashboard%2F12",
		header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}})
	wantStatus(t, r, http.StatusFound)
	if got := r.Header.Get("Location"); got != "/dashboard/12" {
		t.Errorf("Location = %q, want /dashboard/12", got)
	}
	sess := r.cookie(t, SessionCookie)
	if sess == nil || !validUUID(sess.Value) || !sess.HttpOnly || sess.Path != "/" || sess.SameSite != http.SameSiteLaxMode ||
		!sess.Secure || sess.MaxAge != 0 || !sess.Expires.IsZero() {
		t.Errorf("metabase.SESSION = %+v", sess)
	}
	to := r.cookie(t, TimeoutCookie)
	if to == nil || to.Value != "alive" || to.HttpOnly || to.Path != "/" || to.SameSite != http.SameSiteLaxMode || !to.Secure || to.MaxAge != 1209600 {
		t.Errorf("metabase.TIMEOUT = %+v", to)
	}
	dev := r.cookie(t, DeviceCookie)
	if dev == nil || !validUUID(dev.Value) || !dev.HttpOnly || dev.SameSite != http.SameSiteNoneMode || !dev.Secure ||
		dev.Expires.Year() != clock.Now().Year()+20 {
		t.Errorf("metabase.DEVICE = %+v", dev)
	}
	u, ok := s.User("ANA@example.com")
	if !ok {
		t.Fatal("user not provisioned")
	}
	want := User{ID: u.ID, Email: "ana@example.com", FirstName: "Ana", LastName: "Lima", Password: u.Password, Active: true,
		SSOSource: "jwt", GroupIDs: []int{AllUsersGroupID}, GroupNames: []string{"All Users"},
		Attributes: map[string]string{"region": "EU", "level": "3"}}
	if diff := cmp.Diff(want, u); diff != "" {
		t.Errorf("user (-want +got):\n%s", diff)
	}
	if got := s.Sessions("ana@example.com"); len(got) != 1 || got[0] != sess.Value {
		t.Errorf("Sessions = %v, want [%s]", got, sess.Value)
	}
	if got := currentEmail(t, s, sess.Value); got != "ana@example.com" {
		t.Errorf("current user = %q", got)
	}
}

// TestSSOCookiesOverPlainHTTP pins 2.2: Secure only when X-Forwarded-Proto is
// exactly https (a chain is not), DEVICE SameSite=Lax over http, and no new
// DEVICE when the browser has one.
func TestSSOCookiesOverPlainHTTP(t *testing.T) {
	s, clock := jwtServer(t, nil)
	for name, hdr := range map[string]map[string]string{
		"no header":   nil,
		"proto chain": {"X-Forwarded-Proto": "https, http"},
		"proto http":  {"X-Forwarded-Proto": "http", "Origin": "https://bi.example.com"},
	} {
		t.Run(name, func(t *testing.T) {
			tok := sign(t, []byte(testSecret), hs256, claimsFor(clock, "ana@example.com"))
			r := do(t, s, req{path: "/auth/sso?jwt=" + tok, header: hdr})
			wantStatus(t, r, http.StatusFound)
			if c := r.cookie(t, SessionCookie); c.Secure {
				t.Error("metabase.SESSION is Secure")
			}
			if c := r.cookie(t, DeviceCookie); c.Secure || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("metabase.DEVICE = %+v", c)
			}
		})
	}
	tok := sign(t, []byte(testSecret), hs256, claimsFor(clock, "ana@example.com"))
	r := do(t, s, req{path: "/auth/sso?jwt=" + tok, cookies: []*http.Cookie{{Name: DeviceCookie, Value: randomUUID()}}})
	wantStatus(t, r, http.StatusFound)
	if r.cookie(t, DeviceCookie) != nil {
		t.Error("metabase.DEVICE re-issued although the browser sent one")
	}
	if got := r.Header.Get("Location"); got != "/" {
		t.Errorf("default Location = %q, want /", got)
	}
}

// TestSSOAcceptsGoJoseHS256 proves a standard HS256 library interoperates.
func TestSSOAcceptsGoJoseHS256(t *testing.T) {
	s, clock := jwtServer(t, nil)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(testSecret)}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claimsFor(clock, "ana@example.com")).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, do(t, s, req{path: "/auth/sso?jwt=" + tok}), http.StatusFound)
}

// TestSSOTokenChecks pins 1.2 and 1.3: HS256 over the raw secret whatever
// alg says, exp with no leeway, nbf, iat no older than 180 s, email required.
func TestSSOTokenChecks(t *testing.T) {
	s, clock := jwtServer(t, nil)
	now := clock.Now().Unix()
	key := []byte(testSecret)
	with := func(mod func(map[string]any)) map[string]any {
		c := claimsFor(clock, "ana@example.com")
		mod(c)
		return c
	}
	hexKey, err := hex.DecodeString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	ok := claimsFor(clock, "ana@example.com")
	hs512 := func() string {
		h, _ := json.Marshal(map[string]any{"alg": "HS512"})
		c, _ := json.Marshal(ok)
		in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
		mac := hmac.New(sha512.New, key)
		mac.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}()
	none := func() string {
		h, _ := json.Marshal(map[string]any{"alg": "none"})
		c, _ := json.Marshal(ok)
		return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
	}()
	tests := []struct {
		name     string
		token    string
		status   int
		bodyWant string
	}{
		{"valid", sign(t, key, hs256, ok), http.StatusFound, ""},
		{"alg header ignored, HS256 MAC accepted", sign(t, key, map[string]any{"alg": "RS256"}, ok), http.StatusFound, ""},
		{"wrong secret", sign(t, []byte("other"), hs256, ok), http.StatusUnauthorized, msgCorrupt},
		{"hex-decoded secret", sign(t, hexKey, hs256, ok), http.StatusUnauthorized, msgCorrupt},
		{"alg none", none, http.StatusUnauthorized, msgCorrupt},
		{"HS512", hs512, http.StatusUnauthorized, msgCorrupt},
		{"two parts", strings.Join(strings.Split(sign(t, key, hs256, ok), ".")[:2], "."), http.StatusUnauthorized, msgCorrupt},
		{"tampered payload", func() string {
			p := strings.Split(sign(t, key, hs256, ok), ".")
			c, _ := json.Marshal(with(func(c map[string]any) { c["email"] = "admin@metabase.test" }))
			return p[0] + "." + base64.RawURLEncoding.EncodeToString(c) + "." + p[2]
		}(), http.StatusUnauthorized, msgCorrupt},
		{"exp now", sign(t, key, hs256, with(func(c map[string]any) { c["exp"] = now })), http.StatusUnauthorized, "Token is expired"},
		{"exp now+1", sign(t, key, hs256, with(func(c map[string]any) { c["exp"] = now + 1 })), http.StatusFound, ""},
		{"nbf future", sign(t, key, hs256, with(func(c map[string]any) { c["nbf"] = now + 1 })), http.StatusUnauthorized, "Token is not yet valid"},
		{"iat 181 s old", sign(t, key, hs256, with(func(c map[string]any) { c["iat"] = now - 181; delete(c, "exp") })), http.StatusUnauthorized, msgTooOld},
		{"iat 180 s old", sign(t, key, hs256, with(func(c map[string]any) { c["iat"] = now - 180; delete(c, "exp") })), http.StatusFound, ""},
		{"no iat no exp never expires", sign(t, key, hs256, with(func(c map[string]any) { delete(c, "iat"); delete(c, "exp") })), http.StatusFound, ""},
		{"iss aud sub unchecked", sign(t, key, hs256, with(func(c map[string]any) { c["iss"], c["aud"], c["sub"] = "x", "y", "z" })), http.StatusFound, ""},
		{"missing email", sign(t, key, hs256, with(func(c map[string]any) { delete(c, "email") })), http.StatusUnauthorized, msgMissingEmail},
		{"empty jwt", "", http.StatusUnauthorized, msgCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, s, req{path: "/auth/sso?jwt=" + url.QueryEscape(tc.token)})
			wantStatus(t, r, tc.status)
			if !strings.Contains(r.body, tc.bodyWant) {
				t.Errorf("body %q, want it to contain %q", r.body, tc.bodyWant)
			}
			if tc.status != http.StatusFound && r.cookie(t, SessionCookie) != nil {
				t.Error("rejected login set metabase.SESSION")
			}
		})
	}
}

// TestSSOReplayAfter180Seconds is the replay the issue asks for: the same
// token works at first and is refused 181 s later.
func TestSSOReplayAfter180Seconds(t *testing.T) {
	s, clock := jwtServer(t, nil)
	c := claimsFor(clock, "ana@example.com")
	delete(c, "exp")
	tok := sign(t, []byte(testSecret), hs256, c)
	wantStatus(t, do(t, s, req{path: "/auth/sso?jwt=" + tok}), http.StatusFound)
	clock.Advance(181 * time.Second)
	wantStatus(t, do(t, s, req{path: "/auth/sso?jwt=" + tok}), http.StatusUnauthorized)
}

// TestSSOCheckOrder pins 1.1: the paid feature (402) first, then JWT
// enabled (401), and POST is an HTML error (501).
func TestSSOCheckOrder(t *testing.T) {
	clock := newClock()
	tok := sign(t, []byte(testSecret), hs256, claimsFor(clock, "ana@example.com"))
	for _, tc := range []struct {
		name   string
		opts   Options
		method string
		status int
	}{
		{"OSS", Options{JWTEnabled: true, JWTSharedSecret: testSecret, Now: clock.Now}, http.MethodGet, http.StatusPaymentRequired},
		{"JWT disabled", Options{Edition: Enterprise, JWTSharedSecret: testSecret, Now: clock.Now}, http.MethodGet, http.StatusUnauthorized},
		{"no secret", Options{Edition: Enterprise, JWTEnabled: true, Now: clock.Now}, http.MethodGet, http.StatusUnauthorized},
		{"POST", Options{Edition: Enterprise, JWTEnabled: true, JWTSharedSecret: testSecret, Now: clock.Now}, http.MethodPost, http.StatusNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(t, tc.opts)
			r := do(t, s, req{method: tc.method, path: "/auth/sso?jwt=" + tok})
			wantStatus(t, r, tc.status)
			if tc.method == http.MethodPost && !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
				t.Errorf("POST Content-Type = %q, want text/html", r.Header.Get("Content-Type"))
			}
			if len(s.Users()) != 1 {
				t.Error("a refused request provisioned a user")
			}
		})
	}
}

// TestSSOWithoutJWTRedirectsToIdentityProvider pins 1.1: redirect comes in,
// return_to goes out, not encoded again.
func TestSSOWithoutJWTRedirectsToIdentityProvider(t *testing.T) {
	for _, tc := range []struct{ idp, query, want string }{
		{"https://gh.example/sso", "?redirect=%2Fdashboard%2F12", "https://gh.example/sso?return_to=/dashboard/12"},
		{"https://gh.example/sso?x=1", "?redirect=%2Fq%3Fa%3Db", "https://gh.example/sso?x=1&return_to=/q?a=b"},
		{"https://gh.example/sso", "", "https://gh.example/sso"},
	} {
		s, _ := jwtServer(t, func(o *Options) { o.JWTIdentityProviderURI = tc.idp })
		r := do(t, s, req{path: "/auth/sso" + tc.query})
		wantStatus(t, r, http.StatusFound)
		if got := r.Header.Get("Location"); got != tc.want {
			t.Errorf("%s%s: Location = %q, want %q", tc.idp, tc.query, got, tc.want)
		}
	}
}

// TestReturnToRejectsForeignHosts pins 1.5: relative or site-url's host,
// anything else 400 with no session.
func TestReturnToRejectsForeignHosts(t *testing.T) {
	s, clock := jwtServer(t, nil)
	for _, tc := range []struct {
		returnTo string
		ok       bool
	}{
		{"/", true},
		{"/dashboard/12?tab=3#x", true},
		{"dashboard/12", true},
		{"https://bi.example.com/question/1", true},
		{"http://bi.example.com:8443/x", true},
		{"https://evil.example/", false},
		{"//evil.example/x", false},
		{"/\\evil.example", false},
		{"javascript:alert(1)", false},
		{"https://bi.example.com.evil.example/", false},
		{"/%zz", false},
	} {
		t.Run(tc.returnTo, func(t *testing.T) {
			tok := sign(t, []byte(testSecret), hs256, claimsFor(clock, "ana@example.com"))
			r := do(t, s, req{path: "/auth/sso?jwt=" + tok + "&return_to=" + url.QueryEscape(tc.returnTo)})
			if !tc.ok {
				wantStatus(t, r, http.StatusBadRequest)
				if r.cookie(t, SessionCookie) != nil {
					t.Error("session cookie on a rejected return_to")
				}
				return
			}
			wantStatus(t, r, http.StatusFound)
			if got := r.Header.Get("Location"); got != tc.returnTo {
				t.Errorf("Location = %q, want %q exactly", got, tc.returnTo)
			}
		})
	}
}

// TestSSOProvisioning pins 1.4.
func TestSSOProvisioning(t *testing.T) {
	t.Run("disabled refuses unknown users", func(t *testing.T) {
		s, clock := jwtServer(t, func(o *Options) { o.JWTProvisioningDisabled = true })
		tok := sign(t, []byte(testSecret), hs256, claimsFor(clock, "new@example.com"))
		wantStatus(t, do(t, s, req{path: "/auth/sso?jwt=" + tok}), http.StatusUnauthorized)
		if _, ok := s.User("new@example.com"); ok {
			t.Error("user created with provisioning off")
		}
	})
	t.Run("disabled refuses deactivated users", func(t *testing.T) {
		s, clock := jwtServer(t, func(o *Options) { o.JWTProvisioningDisabled = true })
		s.AddUser(NewUser{Email: "old@example.com"})
		deactivate(t, s, "old@example.com")
		tok := sign(t, []byte(testSecret), hs256, claimsFor(clock, "old@example.com"))
		wantStatus(t, do(t, s, req{path: "/auth/sso?jwt=" + tok}), http.StatusUnauthorized)
	})
	t.Run("enabled reactivates deactivated users", func(t *testing.T) {
		s, clock := jwtServer(t, nil)
		s.AddUser(NewUser{Email: "old@example.com"})
		deactivate(t, s, "old@example.com")
		ssoLogin(t, s, clock, claimsFor(clock, "old@example.com"))
		if u, _ := s.User("old@example.com"); !u.Active {
			t.Error("JWT login did not reactivate the user")
		}
	})
	t.Run("case-insensitive email, names kept when omitted", func(t *testing.T) {
		s, clock := jwtServer(t, nil)
		before := s.AddUser(NewUser{Email: "Ana@Example.com", FirstName: "Ana", LastName: "Old"})
		c := claimsFor(clock, "ana@example.COM")
		delete(c, "first_name")
		c["last_name"] = "New"
		ssoLogin(t, s, clock, c)
		u, _ := s.User("ana@example.com")
		if u.ID != before.ID || u.FirstName != "Ana" || u.LastName != "New" || len(s.Users()) != 2 {
			t.Errorf("user = %+v, users = %d", u, len(s.Users()))
		}
	})
}

func deactivate(t *testing.T, s *Server, email string) {
	t.Helper()
	u, _ := s.User(email)
	admin := passwordLogin(t, s, SetupAdminEmail, SetupAdminPassword)
	wantStatus(t, do(t, s, req{method: http.MethodDelete, path: "/api/user/" + itoa(u.ID), cookies: sessionCookie(admin)}), http.StatusOK)
}

// TestSSOGroupSyncByNameRemovesAdministrators is the trap in 1.6 case 2:
// without mappings the user's groups become exactly the named ones, so an
// admin whose claim lacks "Administrators" loses admin.
func TestSSOGroupSyncByNameRemovesAdministrators(t *testing.T) {
	s, clock := jwtServer(t, nil)
	fin, old, newg := s.AddGroup("Finance"), s.AddGroup("Old"), s.AddGroup("New")
	s.AddUser(NewUser{Email: "ana@example.com", GroupIDs: []int{AdministratorsGroupID, fin, old}})
	ssoLogin(t, s, clock, claimsFor(clock, "ana@example.com", "Finance", "New", "finance-lowercase", "All Users"))
	u, _ := s.User("ana@example.com")
	if diff := cmp.Diff([]int{AllUsersGroupID, fin, newg}, u.GroupIDs); diff != "" || u.Superuser {
		t.Errorf("groups (-want +got):\n%s superuser=%v", diff, u.Superuser)
	}
	ssoLogin(t, s, clock, claimsFor(clock, "ana@example.com", "Administrators"))
	if u, _ := s.User("ana@example.com"); !u.Superuser || !cmp.Equal(u.GroupIDs, []int{AllUsersGroupID, AdministratorsGroupID}) {
		t.Errorf("after claiming Administrators: %+v", u)
	}
}

// TestSSOGroupSyncKeepsLastAdmin pins 1.6 "Always": the last admin stays admin.
func TestSSOGroupSyncKeepsLastAdmin(t *testing.T) {
	s, clock := jwtServer(t, nil)
	ssoLogin(t, s, clock, claimsFor(clock, SetupAdminEmail))
	if u, _ := s.User(SetupAdminEmail); !u.Superuser {
		t.Error("group sync removed the last admin")
	}
}

// TestSSOGroupSyncWithMappings pins 1.6 case 1: only mapped ids are managed;
// unknown ids are skipped; Administrators is untouched unless mapped.
func TestSSOGroupSyncWithMappings(t *testing.T) {
	clock := newClock()
	s := New(t, Options{Edition: Enterprise, JWTEnabled: true, JWTSharedSecret: testSecret, JWTGroupSync: true, Now: clock.Now,
		JWTGroupMappings: map[string][]int{"ext-fin": {3}, "ext-sales": {4, 99}}})
	fin, sales, other := s.AddGroup("Finance"), s.AddGroup("Sales"), s.AddGroup("Other")
	if fin != 3 || sales != 4 {
		t.Fatalf("group ids %d %d", fin, sales)
	}
	s.AddUser(NewUser{Email: "ana@example.com", GroupIDs: []int{AdministratorsGroupID, fin, other}})
	ssoLogin(t, s, clock, claimsFor(clock, "ana@example.com", "ext-sales", "Finance"))
	u, _ := s.User("ana@example.com")
	if diff := cmp.Diff([]int{AllUsersGroupID, AdministratorsGroupID, sales, other}, u.GroupIDs); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}

// TestSSOGroupSyncOnlyAtLoginWithClaim pins 1.6: no groups claim, or sync
// off, leaves membership alone; membership changes only at login.
func TestSSOGroupSyncOnlyAtLoginWithClaim(t *testing.T) {
	for _, tc := range []struct {
		name string
		sync bool
		drop bool
	}{{"claim absent", true, true}, {"sync off", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			s, clock := jwtServer(t, func(o *Options) { o.JWTGroupSync = tc.sync })
			fin := s.AddGroup("Finance")
			s.AddUser(NewUser{Email: "ana@example.com", GroupIDs: []int{fin}})
			c := claimsFor(clock, "ana@example.com")
			if tc.drop {
				delete(c, "groups")
			}
			ssoLogin(t, s, clock, c)
			if u, _ := s.User("ana@example.com"); !cmp.Equal(u.GroupIDs, []int{AllUsersGroupID, fin}) {
				t.Errorf("groups = %v", u.GroupIDs)
			}
		})
	}
}

// TestSSOJSONMode pins 1.9: 402 unless the SDK setting is on; then the key
// comes in the body and no cookie is set.
func TestSSOJSONMode(t *testing.T) {
	hdr := map[string]string{"X-Metabase-Client": "embedding-sdk-react"}
	s, clock := jwtServer(t, nil)
	tok := sign(t, []byte(testSecret), hs256, claimsFor(clock, "ana@example.com"))
	wantStatus(t, do(t, s, req{path: "/auth/sso?jwt=" + tok, header: hdr}), http.StatusPaymentRequired)

	s, clock = jwtServer(t, func(o *Options) { o.EmbeddingSDKEnabled = true })
	c := claimsFor(clock, "ana@example.com")
	r := do(t, s, req{path: "/auth/sso?jwt=" + sign(t, []byte(testSecret), hs256, c), header: hdr})
	wantStatus(t, r, http.StatusOK)
	if len(r.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("JSON mode set cookies: %v", r.Header.Values("Set-Cookie"))
	}
	body := decode[map[string]any](t, r)
	key, _ := body["id"].(string)
	if body["status"] != "ok" || !validUUID(key) || body["exp"] != float64(c["exp"].(int64)) {
		t.Errorf("body = %v", body)
	}
	r = do(t, s, req{path: "/api/user/current", header: map[string]string{"X-Metabase-Session": key}})
	wantStatus(t, r, http.StatusOK)
}

func itoa(i int) string { return strconv.Itoa(i) }
