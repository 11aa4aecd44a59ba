package idp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

const (
	testClientID = "gatehouse"
	testSecret   = "test-client-secret-0123456789"
)

// rp is a test relying party: a loopback server that stands for
// gatehouse, with a callback path (never reached: the test browser stops
// at the redirect) and a back-channel logout receiver.
type rp struct {
	srv *httptest.Server

	mu      sync.Mutex
	logouts []string // logout tokens received; guarded by mu
	status  int      // answer of the receiver; guarded by mu
}

func (r *rp) tokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.logouts)
}

func (r *rp) callback() string { return r.srv.URL + "/callback" }

type env struct {
	t      *testing.T
	p      *Provider
	srv    *httptest.Server
	issuer string
	rp     *rp
	oidc   *gooidc.Provider
	conf   *oauth2.Config
	logBuf *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newEnv starts the provider on a loopback httptest server, mounted at
// /.gatehouse/idp like gatehouse mounts it, and a relying party.
func newEnv(t *testing.T, modify func(*ProviderOptions)) *env {
	t.Helper()
	r := &rp{status: http.StatusOK}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/backchannel-logout" || req.Method != http.MethodPost {
			http.NotFound(w, req)
			return
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			http.Error(w, "bad content type "+ct, http.StatusBadRequest)
			return
		}
		tok := req.PostFormValue("logout_token")
		r.mu.Lock()
		r.logouts = append(r.logouts, tok)
		status := r.status
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)

	e := &env{t: t, rp: r, logBuf: &syncBuffer{}}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.issuer = e.srv.URL + "/.gatehouse/idp"

	opts := ProviderOptions{
		Issuer: e.issuer,
		Users:  loadDemo(t),
		Clients: []Client{{
			ID:                     testClientID,
			Secret:                 testSecret,
			RedirectURIs:           []string{r.callback()},
			PostLogoutRedirectURIs: []string{r.srv.URL + "/signed-out"},
			BackchannelLogoutURI:   r.srv.URL + "/backchannel-logout",
		}},
		Log: slog.New(slog.NewTextHandler(e.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if modify != nil {
		modify(&opts)
	}
	p, err := NewProvider(opts)
	if err != nil {
		t.Fatalf("NewProvider: %v", err)
	}
	e.p = p
	mux.Handle("/.gatehouse/idp/", p)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.oidc, err = gooidc.NewProvider(ctx, e.issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	e.conf = &oauth2.Config{
		ClientID:     testClientID,
		ClientSecret: testSecret,
		Endpoint:     e.oidc.Endpoint(),
		RedirectURL:  r.callback(),
		Scopes:       []string{gooidc.ScopeOpenID, "email", "profile", "groups", gooidc.ScopeOfflineAccess},
	}
	return e
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// browser returns a client with a cookie jar that follows redirects until
// it reaches the relying party's callback.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), e.rp.callback()) {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

var idFieldRE = regexp.MustCompile(`name="id" value="([^"]+)"`)

// loginForm starts a login at the authorization endpoint and returns the
// login page's response and the auth request ID in its form.
func (e *env) loginForm(b *http.Client, authURL string) (*http.Response, string) {
	e.t.Helper()
	resp, err := b.Get(authURL)
	if err != nil {
		e.t.Fatalf("GET authorize: %v", err)
	}
	body := readBody(e.t, resp)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("login page: status %d: %s", resp.StatusCode, body)
	}
	m := idFieldRE.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("login page has no id field:\n%s", body)
	}
	resp.Body = io.NopCloser(strings.NewReader(body)) // for callers that read the page
	return resp, m[1]
}

func (e *env) postLogin(b *http.Client, id, user, password string) *http.Response {
	e.t.Helper()
	resp, err := b.PostForm(e.issuer+"/login", url.Values{"id": {id}, "username": {user}, "password": {password}})
	if err != nil {
		e.t.Fatalf("POST login: %v", err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type login struct {
	token   *oauth2.Token
	idToken *gooidc.IDToken
	raw     string
	claims  map[string]any
}

// login signs user in with the code flow and PKCE, exchanges the code
// and verifies the ID token.
func (e *env) login(user, password string) *login {
	e.t.Helper()
	code, verifier, nonce := e.code(user, password)
	tok, err := e.conf.Exchange(ctx(e.t), code, oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatalf("Exchange: %v", err)
	}
	l := e.verify(tok)
	if l.idToken.Nonce != nonce {
		e.t.Errorf("nonce = %q, want %q", l.idToken.Nonce, nonce)
	}
	return l
}

// code runs the browser part of a login and returns the code.
func (e *env) code(user, password string) (code, verifier, nonce string) {
	e.t.Helper()
	verifier = oauth2.GenerateVerifier()
	state, nonce := randomID(12), randomID(12)
	b := e.browser()
	_, id := e.loginForm(b, e.conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), gooidc.Nonce(nonce)))
	resp := e.postLogin(b, id, user, password)
	body := readBody(e.t, resp)
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("login: status %d: %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	if got := loc.Query().Get("state"); got != state {
		e.t.Fatalf("state = %q, want %q", got, state)
	}
	code = loc.Query().Get("code")
	if code == "" {
		e.t.Fatalf("no code in %s", loc.Redacted())
	}
	return code, verifier, nonce
}

func (e *env) verify(tok *oauth2.Token) *login {
	e.t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		e.t.Fatal("no id_token in token response")
	}
	idt, err := e.oidc.Verifier(&gooidc.Config{ClientID: testClientID}).Verify(ctx(e.t), raw)
	if err != nil {
		e.t.Fatalf("verifying ID token: %v", err)
	}
	l := &login{token: tok, idToken: idt, raw: raw}
	if err := idt.Claims(&l.claims); err != nil {
		e.t.Fatal(err)
	}
	return l
}

func (e *env) refresh(rt string) (*oauth2.Token, error) {
	return e.conf.TokenSource(ctx(e.t), &oauth2.Token{RefreshToken: rt, Expiry: time.Now().Add(-time.Hour)}).Token()
}

func TestLoginCodeFlowWithPKCE(t *testing.T) {
	e := newEnv(t, nil)

	// The login page itself.
	b := e.browser()
	verifier := oauth2.GenerateVerifier()
	resp, _ := e.loginForm(b, e.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)))
	for h, want := range map[string]string{
		"Cache-Control":   "no-store",
		"Referrer-Policy": "no-referrer",
		"X-Frame-Options": "DENY",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("login page %s = %q, want %q", h, got, want)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	page := readBody(t, resp)
	style, _, _ := strings.Cut(strings.SplitN(page, "<style>", 2)[1], "</style>")
	sum := sha256.Sum256([]byte(style))
	if h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, "style-src "+h+";") {
		t.Errorf("CSP %q does not allow the page's style by its hash %s", csp, h)
	}
	for _, want := range []string{`name="username"`, `name="password"`, `type="password"`, `autocomplete="current-password"`, `<label for="username">`, `<html lang="en">`} {
		if !strings.Contains(page, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "style-src 'sha256-"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}

	l := e.login("alice", "wonderland")
	want := map[string]any{
		"iss":                e.issuer,
		"sub":                SubjectFor("alice"),
		"email":              "alice@example.test",
		"email_verified":     true,
		"name":               "Alice",
		"preferred_username": "alice",
		"groups":             []any{"admins", "analysts"},
	}
	for k, v := range want {
		if diff := cmp.Diff(v, l.claims[k]); diff != "" {
			t.Errorf("ID token claim %s (-want +got):\n%s", k, diff)
		}
	}
	if sid, _ := l.claims["sid"].(string); len(sid) < 16 {
		t.Errorf("sid = %v, want a random session ID", l.claims["sid"])
	}
	if l.token.RefreshToken == "" {
		t.Error("no refresh token despite offline_access")
	}
	if !strings.EqualFold(l.token.TokenType, "bearer") {
		t.Errorf("token_type = %q", l.token.TokenType)
	}

	ui, err := e.oidc.UserInfo(ctx(t), oauth2.StaticTokenSource(l.token))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uiClaims map[string]any
	if err := ui.Claims(&uiClaims); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if k == "iss" {
			continue
		}
		if diff := cmp.Diff(v, uiClaims[k]); diff != "" {
			t.Errorf("userinfo claim %s (-want +got):\n%s", k, diff)
		}
	}

	// Two logins get two OP sessions.
	l2 := e.login("alice", "wonderland")
	if l2.claims["sid"] == l.claims["sid"] {
		t.Error("two logins share a sid")
	}
}

func TestDiscoveryAdvertisesOnlyWhatIsSupported(t *testing.T) {
	e := newEnv(t, nil)
	var d map[string]any
	if err := e.oidc.Claims(&d); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                e.issuer,
		"response_types_supported":              []any{"code"},
		"grant_types_supported":                 []any{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":      []any{"S256"},
		"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"backchannel_logout_supported":          true,
		"backchannel_logout_session_supported":  true,
		"end_session_endpoint":                  e.issuer + "/end_session",
		"jwks_uri":                              e.issuer + "/keys",
		"scopes_supported":                      []any{"openid", "email", "profile", "groups", "offline_access"},
	}
	for k, v := range want {
		if diff := cmp.Diff(v, d[k]); diff != "" {
			t.Errorf("discovery %s (-want +got):\n%s", k, diff)
		}
	}
	for _, k := range []string{"introspection_endpoint", "device_authorization_endpoint"} {
		if _, ok := d[k]; ok {
			t.Errorf("discovery advertises %s", k)
		}
	}
}

func TestClientSecretPostAccepted(t *testing.T) {
	e := newEnv(t, nil)
	e.conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	e.login("bob", "builder")
}

func TestWrongPasswordGetsGeneric401AndNoCode(t *testing.T) {
	e := newEnv(t, nil)
	var bodies []string
	for _, c := range []struct{ user, password string }{
		{"alice", "not-wonderland"},
		{"mallory", "wonderland"},
	} {
		b := e.browser()
		_, id := e.loginForm(b, e.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		resp := e.postLogin(b, id, c.user, c.password)
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", c.user, resp.StatusCode)
		}
		if loc := resp.Header.Get("Location"); loc != "" {
			t.Errorf("%s: redirected to %s", c.user, loc)
		}
		if !strings.Contains(body, "Invalid username or password.") || !strings.Contains(body, `name="password"`) {
			t.Errorf("%s: body lacks the generic message or the form:\n%s", c.user, body)
		}
		// Apart from the echoed username and the request ID, the
		// answers for a wrong password and an unknown user are the same.
		body = strings.ReplaceAll(body, c.user, "USER")
		bodies = append(bodies, idFieldRE.ReplaceAllString(body, "ID"))
	}
	if diff := cmp.Diff(bodies[0], bodies[1]); diff != "" {
		t.Errorf("wrong password and unknown user differ (-wrong +unknown):\n%s", diff)
	}
	if strings.Contains(e.logBuf.String(), "not-wonderland") || strings.Contains(e.logBuf.String(), "mallory") {
		t.Errorf("log holds a typed password or username:\n%s", e.logBuf.String())
	}
}

func TestPasswordGuessingRateLimited(t *testing.T) {
	lim, err := NewLimiter(LimiterOptions{PerUser: 2, PerIP: 100, Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *ProviderOptions) { o.Limiter = lim })
	b := e.browser()
	_, id := e.loginForm(b, e.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	for i := range 2 {
		resp := e.postLogin(b, id, "alice", "guess")
		readBody(t, resp)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: status %d, want 401", i, resp.StatusCode)
		}
	}
	// Limited now, even with the right password.
	resp := e.postLogin(b, id, "alice", "wonderland")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	if resp.Header.Get("Location") != "" {
		t.Error("a limited login redirected")
	}
	// Another user from the same address is not limited.
	resp = e.postLogin(b, id, "bob", "builder")
	readBody(t, resp)
	if resp.StatusCode != http.StatusFound {
		t.Errorf("bob: status %d, want 302", resp.StatusCode)
	}
}

// authorizeError sends the browser to the authorization endpoint with
// extra parameters and returns the error the provider redirected back.
func authorizeError(t *testing.T, e *env, opts ...oauth2.AuthCodeOption) (status int, errCode string) {
	t.Helper()
	resp, err := e.browser().Get(e.conf.AuthCodeURL("st", opts...))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("got a login page, want an error: %s", body)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return resp.StatusCode, loc.Query().Get("error")
}

func TestPlainPKCERefused(t *testing.T) {
	e := newEnv(t, nil)
	v := oauth2.GenerateVerifier()
	status, code := authorizeError(t, e,
		oauth2.SetAuthURLParam("code_challenge", v),
		oauth2.SetAuthURLParam("code_challenge_method", "plain"))
	if status != http.StatusFound || code != "invalid_request" {
		t.Errorf("plain PKCE: status %d error %q; want a redirect with invalid_request", status, code)
	}
}

func TestMissingPKCERefused(t *testing.T) {
	e := newEnv(t, nil)
	status, code := authorizeError(t, e)
	if status != http.StatusFound || code != "invalid_request" {
		t.Errorf("no PKCE: status %d error %q; want a redirect with invalid_request", status, code)
	}
	// A challenge without a method means plain (RFC 7636, section 4.3).
	status, code = authorizeError(t, e, oauth2.SetAuthURLParam("code_challenge", oauth2.GenerateVerifier()))
	if status != http.StatusFound || code != "invalid_request" {
		t.Errorf("no method: status %d error %q; want a redirect with invalid_request", status, code)
	}
}

func TestCodeWithoutVerifierRefused(t *testing.T) {
	e := newEnv(t, nil)
	code, _, _ := e.code("alice", "wonderland")
	if _, err := e.conf.Exchange(ctx(t), code); err == nil {
		t.Fatal("code exchanged without code_verifier")
	}
}

func TestCodeWithWrongVerifierRefused(t *testing.T) {
	e := newEnv(t, nil)
	code, _, _ := e.code("alice", "wonderland")
	if _, err := e.conf.Exchange(ctx(t), code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("code exchanged with another code_verifier")
	}
}

func TestCodeForOtherClientSecretRefused(t *testing.T) {
	e := newEnv(t, nil)
	code, verifier, _ := e.code("alice", "wonderland")
	bad := *e.conf
	bad.ClientSecret = "wrong"
	if _, err := bad.Exchange(ctx(t), code, oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("code exchanged with a wrong client secret")
	}
}

func TestUnregisteredRedirectURIRefused(t *testing.T) {
	e := newEnv(t, nil)
	bad := *e.conf
	bad.RedirectURL = "https://attacker.example/callback"
	resp, err := e.browser().Get(bad.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("status %d, Location %q; want 400 without a redirect", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestCodeReplayRefused(t *testing.T) {
	e := newEnv(t, nil)
	code, verifier, _ := e.code("alice", "wonderland")
	tok, err := e.conf.Exchange(ctx(t), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.conf.Exchange(ctx(t), code, oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a code was redeemed twice")
	}
	// RFC 6749, section 4.1.2: the replay revokes what the code got.
	if _, err := e.refresh(tok.RefreshToken); err == nil {
		t.Error("refresh token of a replayed code still works")
	}
}

func TestLoginPostWithoutBindingCookieRefused(t *testing.T) {
	e := newEnv(t, nil)
	_, id := e.loginForm(e.browser(), e.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	// Another browser (an attacker's page posting cross-site, or a
	// stolen auth request ID) has no binding cookie.
	other := e.browser()
	resp := e.postLogin(other, id, "alice", "wonderland")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("status %d, Location %q; want 400 without a code: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	// A cross-site POST is refused before any password check.
	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/login", strings.NewReader(url.Values{"id": {id}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := other.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: status %d, want 403", resp.StatusCode)
	}
}

func TestAuthRequestIDAloneYieldsNoCode(t *testing.T) {
	e := newEnv(t, nil)
	_, id := e.loginForm(e.browser(), e.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	resp, err := e.browser().Get(e.issuer + "/authorize/callback?id=" + url.QueryEscape(id))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("op's callback: status %d, want 404", resp.StatusCode)
	}
}

func TestExpiredAuthRequestRefused(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	e := newEnv(t, func(o *ProviderOptions) {
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	b := e.browser()
	_, id := e.loginForm(b, e.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	mu.Lock()
	now = now.Add(authRequestTTL + time.Second)
	mu.Unlock()
	resp := e.postLogin(b, id, "alice", "wonderland")
	readBody(t, resp)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("status %d, Location %q; want 400", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestRefreshCarriesNewGroupsAfterSetUsers(t *testing.T) {
	e := newEnv(t, nil)
	l := e.login("alice", "wonderland")
	raw, err := os.ReadFile(filepath.Join("testdata", "users.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(raw), "groups: [admins, analysts]", "groups: [readers]", 1)
	changed = strings.Replace(changed, "name: Alice", "name: Alice Liddell", 1)
	us, err := ParseUsers("users.yaml", []byte(changed))
	if err != nil {
		t.Fatal(err)
	}
	e.p.SetUsers(us)

	tok, err := e.refresh(l.token.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == l.token.RefreshToken {
		t.Error("refresh token not rotated")
	}
	got := e.verify(tok)
	if diff := cmp.Diff([]any{"readers"}, got.claims["groups"]); diff != "" {
		t.Errorf("groups after reload (-want +got):\n%s", diff)
	}
	if got.claims["name"] != "Alice Liddell" || got.claims["sub"] != SubjectFor("alice") {
		t.Errorf("claims after reload: %v", got.claims)
	}
	if got.claims["sid"] != l.claims["sid"] {
		t.Errorf("sid changed on refresh: %v → %v", l.claims["sid"], got.claims["sid"])
	}
	if _, ok := got.claims["nonce"]; ok {
		t.Error("refreshed ID token carries a nonce")
	}
}

func TestRemovedUserCannotRefresh(t *testing.T) {
	e := newEnv(t, nil)
	l := e.login("bob", "builder")
	raw, err := os.ReadFile(filepath.Join("testdata", "users.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	aliceOnly, _, _ := strings.Cut(string(raw), "  - username: bob")
	us, err := ParseUsers("users.yaml", []byte(aliceOnly))
	if err != nil {
		t.Fatal(err)
	}
	e.p.SetUsers(us)
	_, err = e.refresh(l.token.RefreshToken)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("refresh for a removed user: %v; want invalid_grant", err)
	}
	if _, err := e.oidc.UserInfo(ctx(t), oauth2.StaticTokenSource(l.token)); err == nil {
		t.Error("userinfo answers for a removed user")
	}
}

func TestRotatedRefreshTokenReuseRevokesGrant(t *testing.T) {
	e := newEnv(t, nil)
	l := e.login("alice", "wonderland")
	next, err := e.refresh(l.token.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.refresh(l.token.RefreshToken); err == nil {
		t.Fatal("a rotated refresh token worked twice")
	}
	if _, err := e.refresh(next.RefreshToken); err == nil {
		t.Error("the grant survived the reuse of a rotated refresh token")
	}
}

func TestRotateKeyNewTokensVerify(t *testing.T) {
	e := newEnv(t, nil)
	before := e.login("alice", "wonderland")
	if err := e.p.RotateKey(); err != nil {
		t.Fatal(err)
	}
	after := e.login("alice", "wonderland") // verified through a JWKS refetch
	kid := func(raw string) string {
		jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		return jws.Signatures[0].Header.KeyID
	}
	if kid(before.raw) == kid(after.raw) {
		t.Fatal("the new token is signed with the old key")
	}
	// The previous key stays published: old tokens still verify.
	if _, err := e.oidc.Verifier(&gooidc.Config{ClientID: testClientID}).Verify(ctx(t), before.raw); err != nil {
		t.Errorf("token of the previous key: %v", err)
	}
	keys := fetchJWKS(t, e)
	if len(keys.Keys) != 2 {
		t.Errorf("JWKS has %d keys, want 2", len(keys.Keys))
	}
	// A second rotation drops the oldest key.
	if err := e.p.RotateKey(); err != nil {
		t.Fatal(err)
	}
	keys = fetchJWKS(t, e)
	if len(keys.Keys) != 2 || len(keys.Key(kid(before.raw))) != 0 {
		t.Errorf("after two rotations the JWKS has %d keys, oldest present: %v", len(keys.Keys), len(keys.Key(kid(before.raw))) != 0)
	}
}

func fetchJWKS(t *testing.T, e *env) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(e.issuer + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	var ks jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(readBody(t, resp)), &ks); err != nil {
		t.Fatal(err)
	}
	for _, k := range ks.Keys {
		if !k.IsPublic() || k.Algorithm != "RS256" || k.Use != "sig" {
			t.Errorf("JWKS key %s: public %v alg %s use %s", k.KeyID, k.IsPublic(), k.Algorithm, k.Use)
		}
	}
	return ks
}

// checkLogoutToken verifies a logout token against the provider's JWKS
// and its claims against Back-Channel Logout 1.0, section 2.4.
func checkLogoutToken(t *testing.T, e *env, raw string, wantSub, wantSid string) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parsing logout token: %v", err)
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders["typ"].(string); typ != "logout+jwt" {
		t.Errorf("typ = %q, want logout+jwt", typ)
	}
	payload, err := gooidc.NewRemoteKeySet(ctx(t), e.issuer+"/keys").VerifySignature(ctx(t), raw)
	if err != nil {
		t.Fatalf("logout token signature: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	if c["iss"] != e.issuer || c["aud"] != testClientID || c["sub"] != wantSub || c["sid"] != wantSid {
		t.Errorf("logout token iss/aud/sub/sid = %v/%v/%v/%v", c["iss"], c["aud"], c["sub"], c["sid"])
	}
	if diff := cmp.Diff(map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}, c["events"]); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if _, ok := c["nonce"]; ok {
		t.Error("logout token carries a nonce")
	}
	if jti, _ := c["jti"].(string); jti == "" {
		t.Error("logout token has no jti")
	}
	iat, _ := c["iat"].(float64)
	exp, _ := c["exp"].(float64)
	if iat == 0 || exp <= iat || exp-iat > 120 || time.Since(time.Unix(int64(iat), 0)).Abs() > time.Minute {
		t.Errorf("iat %v exp %v: want a fresh token living at most 2 minutes", iat, exp)
	}
}

func TestEndSessionsDeliversLogoutToken(t *testing.T) {
	e := newEnv(t, nil)
	l := e.login("alice", "wonderland")
	other := e.login("bob", "builder")
	if err := e.p.EndSessions(ctx(t), SubjectFor("alice")); err != nil {
		t.Fatalf("EndSessions: %v", err)
	}
	toks := e.rp.tokens()
	if len(toks) != 1 {
		t.Fatalf("receiver got %d logout tokens, want 1", len(toks))
	}
	checkLogoutToken(t, e, toks[0], SubjectFor("alice"), l.claims["sid"].(string))
	if _, err := e.refresh(l.token.RefreshToken); err == nil {
		t.Error("refresh token works after EndSessions")
	}
	if _, err := e.oidc.UserInfo(ctx(t), oauth2.StaticTokenSource(l.token)); err == nil {
		t.Error("access token works after EndSessions")
	}
	if _, err := e.refresh(other.token.RefreshToken); err != nil {
		t.Errorf("another user's refresh failed: %v", err)
	}
}

func TestEndSessionsReportsDeliveryFailure(t *testing.T) {
	e := newEnv(t, nil)
	e.login("alice", "wonderland")
	e.rp.mu.Lock()
	e.rp.status = http.StatusInternalServerError
	e.rp.mu.Unlock()
	err := e.p.EndSessions(ctx(t), SubjectFor("alice"))
	if err == nil || !strings.Contains(err.Error(), `client "gatehouse"`) {
		t.Fatalf("EndSessions error = %v, want a delivery error naming the client", err)
	}
	for _, tok := range e.rp.tokens() {
		if strings.Contains(err.Error(), tok) {
			t.Error("the error holds the logout token")
		}
	}
}

func TestRPInitiatedLogout(t *testing.T) {
	e := newEnv(t, nil)
	l := e.login("alice", "wonderland")
	b := e.browser()
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	q := url.Values{
		"id_token_hint":            {l.raw},
		"post_logout_redirect_uri": {e.rp.srv.URL + "/signed-out"},
		"state":                    {"bye"},
	}
	resp, err := b.Get(e.issuer + "/end_session?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != e.rp.srv.URL+"/signed-out?state=bye" {
		t.Fatalf("end_session: status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	toks := e.rp.tokens()
	if len(toks) != 1 {
		t.Fatalf("receiver got %d logout tokens, want 1", len(toks))
	}
	checkLogoutToken(t, e, toks[0], SubjectFor("alice"), l.claims["sid"].(string))
	if _, err := e.refresh(l.token.RefreshToken); err == nil {
		t.Error("refresh token works after logout")
	}
}

func TestEndSessionUnregisteredPostLogoutRedirectNotFollowed(t *testing.T) {
	e := newEnv(t, nil)
	l := e.login("alice", "wonderland")
	b := e.browser()
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for name, c := range map[string]struct {
		q          url.Values
		wantStatus int
		wantLoc    string
	}{
		"with hint":   {url.Values{"id_token_hint": {l.raw}, "post_logout_redirect_uri": {"https://attacker.example/"}}, http.StatusBadRequest, ""},
		"with client": {url.Values{"client_id": {testClientID}, "post_logout_redirect_uri": {"https://attacker.example/"}}, http.StatusBadRequest, ""},
		// Without a client to check it against, the URI is ignored.
		"bare": {url.Values{"post_logout_redirect_uri": {"https://attacker.example/"}}, http.StatusFound, e.issuer + "/logged-out"},
	} {
		resp, err := b.Get(e.issuer + "/end_session?" + c.q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		if resp.StatusCode != c.wantStatus || resp.Header.Get("Location") != c.wantLoc {
			t.Errorf("%s: status %d Location %q; want %d %q", name, resp.StatusCode, resp.Header.Get("Location"), c.wantStatus, c.wantLoc)
		}
	}
	// Without a hint nothing ends; the refused request ended nothing either.
	if _, err := e.refresh(l.token.RefreshToken); err != nil {
		t.Errorf("refresh after refused logouts: %v", err)
	}
}

func TestRevocationEndsRefreshToken(t *testing.T) {
	e := newEnv(t, nil)
	l := e.login("alice", "wonderland")
	form := url.Values{"token": {l.token.RefreshToken}, "token_type_hint": {"refresh_token"}}
	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if _, err := e.refresh(l.token.RefreshToken); err == nil {
		t.Error("revoked refresh token works")
	}
}

func TestUnsupportedGrantsRefused(t *testing.T) {
	e := newEnv(t, nil)
	for _, gt := range []string{"client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer", "password", ""} {
		form := url.Values{"grant_type": {gt}}
		req, _ := http.NewRequest(http.MethodPost, e.issuer+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(testClientID, testSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "unsupported_grant_type") {
			t.Errorf("grant %q: %d %s", gt, resp.StatusCode, body)
		}
	}
}

func TestLogsCarryNoSecrets(t *testing.T) {
	e := newEnv(t, nil)
	l := e.login("alice", "wonderland")
	if _, err := e.refresh(l.token.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if err := e.p.EndSessions(ctx(t), SubjectFor("alice")); err != nil {
		t.Fatal(err)
	}
	logs := e.logBuf.String()
	if !strings.Contains(logs, "idp login") {
		t.Fatalf("no login event logged:\n%s", logs)
	}
	for _, secret := range append([]string{"wonderland", testSecret, l.token.AccessToken, l.token.RefreshToken, l.raw}, e.rp.tokens()...) {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds a secret %.12q…", secret)
		}
	}
}

func TestNewProviderReportsEveryProblem(t *testing.T) {
	_, err := NewProvider(ProviderOptions{
		Issuer: "ftp://x/",
		Clients: []Client{
			{ID: "a", Secret: "s3cr3t-value", RedirectURIs: []string{"/relative"}, BackchannelLogoutURI: "http://x/#frag"},
			{ID: "a", PostLogoutRedirectURIs: []string{"javascript:alert(1)"}},
		},
		IDTokenTTL: -time.Second,
	})
	if err == nil {
		t.Fatal("NewProvider accepted bad options")
	}
	msg := err.Error()
	for _, want := range []string{
		"Issuer: want an absolute http or https URL",
		"Users: required",
		"Clients[0].RedirectURIs[0]: want an absolute http or https URL",
		"Clients[0].BackchannelLogoutURI: must not have a fragment",
		`Clients[1].ID: duplicate client "a"`,
		"Clients[1].Secret: required",
		"Clients[1].RedirectURIs: at least one is required",
		"Clients[1].PostLogoutRedirectURIs[0]: want an absolute http or https URL",
		"IDTokenTTL: must not be negative",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "s3cr3t-value") {
		t.Error("error echoes a client secret")
	}
	if _, err := NewProvider(ProviderOptions{Issuer: "https://idp.example/x/", Users: &Users{}, Clients: []Client{{ID: "a", Secret: "b", RedirectURIs: []string{"https://a/cb"}}}}); err == nil || !strings.Contains(err.Error(), "must not end with /") {
		t.Errorf("trailing slash: %v", err)
	}
}

func TestServeHTTPOnlyBelowIssuer(t *testing.T) {
	e := newEnv(t, nil)
	for _, path := range []string{"/.gatehouse/idpx/keys", "/.gatehouse/idp/healthz", "/.gatehouse/idp/oauth/introspect", "/.gatehouse/idp/device_authorization"} {
		rec := httptest.NewRecorder()
		e.p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+path, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, rec.Code)
		}
	}
}

func TestConcurrentRefreshOnlyOneWins(t *testing.T) {
	e := newEnv(t, nil)
	l := e.login("alice", "wonderland")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Go(func() {
			if _, err := e.refresh(l.token.RefreshToken); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d concurrent refreshes with one token succeeded, want exactly 1", wins)
	}
}

func TestPromptNoneAnswersLoginRequired(t *testing.T) {
	e := newEnv(t, nil)
	status, code := authorizeError(t, e, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none"))
	if status != http.StatusFound || code != "login_required" {
		t.Errorf("prompt=none: status %d error %q; want a redirect with login_required", status, code)
	}
}

func TestLoggedOutPage(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.issuer + "/logged-out")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "You have been signed out.") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "form-action 'none'") {
		t.Errorf("logged-out page: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Security-Policy"), body)
	}
}
