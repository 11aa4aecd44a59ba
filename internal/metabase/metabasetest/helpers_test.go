package metabasetest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const testSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fakeClock is the injected clock.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// jwtServer starts an Enterprise server with JWT SSO on, and returns it with
// its clock.
func jwtServer(t *testing.T, mod func(*Options)) (*Server, *fakeClock) {
	t.Helper()
	clock := newClock()
	opts := Options{Edition: Enterprise, JWTEnabled: true, JWTSharedSecret: testSecret, JWTGroupSync: true,
		JWTIdentityProviderURI: "https://gatehouse.example/.gatehouse/metabase/sso", SiteURL: "https://bi.example.com",
		Now: clock.Now}
	if mod != nil {
		mod(&opts)
	}
	return New(t, opts), clock
}

// sign makes a JWS with the given header and claims, MACed with HMAC-SHA256
// over key whatever the header says.
func sign(t testing.TB, key []byte, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

var hs256 = map[string]any{"alg": "HS256", "typ": "JWT"}

// claimsFor returns the claims gatehouse sends: email, names, groups, iat, exp.
func claimsFor(clock *fakeClock, email string, groups ...string) map[string]any {
	now := clock.Now().Unix()
	if groups == nil {
		groups = []string{}
	}
	return map[string]any{"email": email, "first_name": "Ana", "last_name": "Lima", "groups": groups,
		"iat": now, "exp": now + 60}
}

type response struct {
	*http.Response
	body string
}

// cookie returns the named Set-Cookie of the response, parsed.
func (r response) cookie(t *testing.T, name string) *http.Cookie {
	t.Helper()
	for _, line := range r.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("Set-Cookie %q: %v", line, err)
		}
		if c.Name == name {
			return c
		}
	}
	return nil
}

type req struct {
	method  string
	path    string
	body    any
	header  map[string]string
	cookies []*http.Cookie
}

// do sends a request without following redirects.
func do(t *testing.T, s *Server, rq req) response {
	t.Helper()
	if rq.method == "" {
		rq.method = http.MethodGet
	}
	var body io.Reader
	if rq.body != nil {
		b, err := json.Marshal(rq.body)
		if err != nil {
			t.Fatal(err)
		}
		body = strings.NewReader(string(b))
	}
	hr, err := http.NewRequestWithContext(t.Context(), rq.method, s.URL+rq.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range rq.header {
		hr.Header.Set(k, v)
	}
	for _, c := range rq.cookies {
		hr.AddCookie(c)
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp, string(b)}
}

// decode unmarshals a JSON response body.
func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
	return v
}

func wantStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body %q", r.Request.Method, r.Request.URL.Path, r.StatusCode, want, r.body)
	}
}

// ssoLogin signs email in through /auth/sso and returns the session key.
func ssoLogin(t *testing.T, s *Server, clock *fakeClock, claims map[string]any) string {
	t.Helper()
	r := do(t, s, req{path: "/auth/sso?jwt=" + sign(t, []byte(testSecret), hs256, claims)})
	wantStatus(t, r, http.StatusFound)
	c := r.cookie(t, SessionCookie)
	if c == nil {
		t.Fatal("no metabase.SESSION cookie")
	}
	return c.Value
}

// passwordLogin signs in with POST /api/session and returns the session key.
func passwordLogin(t *testing.T, s *Server, email, password string) string {
	t.Helper()
	r := do(t, s, req{method: http.MethodPost, path: "/api/session", body: map[string]any{"username": email, "password": password}})
	wantStatus(t, r, http.StatusOK)
	return decode[map[string]string](t, r)["id"]
}

func sessionCookie(key string) []*http.Cookie {
	return []*http.Cookie{{Name: SessionCookie, Value: key}}
}

// currentEmail is who GET /api/user/current sees with this session key
// (cookie), or "" on 401.
func currentEmail(t *testing.T, s *Server, key string) string {
	t.Helper()
	r := do(t, s, req{path: "/api/user/current", cookies: sessionCookie(key)})
	if r.StatusCode == http.StatusUnauthorized {
		return ""
	}
	wantStatus(t, r, http.StatusOK)
	return decode[map[string]any](t, r)["email"].(string)
}
