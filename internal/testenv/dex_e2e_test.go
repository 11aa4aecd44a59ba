//go:build e2e

package testenv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

// e2eTimeout bounds each test's requests to Dex.
const e2eTimeout = 30 * time.Second

const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

func alice(groups ...string) DexUser {
	return DexUser{Username: "alice", Email: "alice@example.test", UserID: "u-alice",
		Password: "alice-pw", Groups: groups}
}

func TestDexLoginCodeFlowWithPKCE(t *testing.T) {
	rp := httptest.NewServer(http.NotFoundHandler()) // never requested: Login stops at the redirect
	defer rp.Close()
	callback := rp.URL + "/callback"

	dex := Dex(t, DexOptions{
		Users:   []DexUser{alice("admins", "staff")},
		Clients: []DexClient{{ID: "gatehouse", Secret: "gatehouse-secret", RedirectURIs: []string{callback}}},
	})

	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	conf := oauthConfig(t, dex, callback)
	tok, claims := login(ctx, t, newJarClient(t), conf, callback)
	if claims.Issuer != dex.Issuer {
		t.Errorf("iss = %q, want %q", claims.Issuer, dex.Issuer)
	}
	if claims.Email != "alice@example.test" {
		t.Errorf("email = %q", claims.Email)
	}
	if diff := cmp.Diff([]string{"admins", "staff"}, claims.Groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if claims.SID == "" {
		t.Error("no sid in the ID token: are Dex sessions enabled?")
	}
	if tok.RefreshToken == "" {
		t.Error("no refresh token with offline_access")
	}
}

// TestDexRefreshTokenGrant refreshes twice, with sessions (the default) and
// without (which needs tools/dex's refreshOutsideLock).
func TestDexRefreshTokenGrant(t *testing.T) {
	for _, tc := range []struct {
		name            string
		disableSessions bool
	}{{"with-sessions", false}, {"without-sessions", true}} {
		t.Run(tc.name, func(t *testing.T) {
			rp := httptest.NewServer(http.NotFoundHandler())
			defer rp.Close()
			callback := rp.URL + "/callback"
			dex := Dex(t, DexOptions{
				Users:           []DexUser{alice("admins")},
				Clients:         []DexClient{{ID: "gatehouse", Secret: "gatehouse-secret", RedirectURIs: []string{callback}}},
				DisableSessions: tc.disableSessions,
			})

			ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
			defer cancel()
			conf := oauthConfig(t, dex, callback)
			tok, first := login(ctx, t, newJarClient(t), conf, callback)

			tok2, second := refresh(ctx, t, conf, tok.RefreshToken)
			if second.Subject != first.Subject || second.Email != first.Email {
				t.Errorf("refreshed sub/email = %q/%q, want %q/%q", second.Subject, second.Email, first.Subject, first.Email)
			}
			if diff := cmp.Diff([]string{"admins"}, second.Groups); diff != "" {
				t.Errorf("refreshed groups (-want +got):\n%s", diff)
			}
			if second.SID != first.SID {
				t.Errorf("refreshed sid = %q, want %q", second.SID, first.SID)
			}
			if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
				t.Errorf("refresh token not rotated: %q", tok2.RefreshToken)
			}
			// With rotation, the new token works again.
			refresh(ctx, t, conf, tok2.RefreshToken)
		})
	}
}

func TestDexBackchannelLogout(t *testing.T) {
	tokens := make(chan url.Values, 4)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /backchannel", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			t.Errorf("back-channel logout Content-Type = %q", ct)
		}
		if err := r.ParseForm(); err != nil {
			t.Errorf("parsing the back-channel logout request: %v", err)
		}
		tokens <- r.PostForm
		w.WriteHeader(http.StatusOK)
	})
	rp := httptest.NewServer(mux)
	defer rp.Close()
	callback, bye := rp.URL+"/callback", rp.URL+"/bye"

	dex := Dex(t, DexOptions{
		Users: []DexUser{alice("admins")},
		Clients: []DexClient{{ID: "gatehouse", Secret: "gatehouse-secret", RedirectURIs: []string{callback},
			PostLogoutRedirectURIs: []string{bye}, BackchannelLogoutURI: rp.URL + "/backchannel"}},
	})

	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	disc := discover(ctx, t, dex.Issuer)
	if disc.EndSessionEndpoint != dex.Issuer+"/logout" || !disc.BackchannelLogoutSupported || !disc.BackchannelLogoutSessionSupported {
		t.Fatalf("discovery: end_session_endpoint %q, backchannel_logout_supported %v, backchannel_logout_session_supported %v",
			disc.EndSessionEndpoint, disc.BackchannelLogoutSupported, disc.BackchannelLogoutSessionSupported)
	}
	conf := oauthConfig(t, dex, callback)
	browser := newJarClient(t)
	tok, claims := login(ctx, t, browser, conf, callback)
	if claims.SID == "" {
		t.Fatal("no sid in the ID token")
	}

	// RP-initiated logout from the same browser (cookie jar).
	q := url.Values{"id_token_hint": {tok.Extra("id_token").(string)},
		"post_logout_redirect_uri": {bye}, "state": {"st-out"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, disc.EndSessionEndpoint+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	noFollow := *browser
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatalf("logout: %v", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if want := bye + "?state=st-out"; resp.StatusCode/100 != 3 || resp.Header.Get("Location") != want {
		t.Fatalf("logout: status %d, Location %q, want a redirect to %q; body: %s",
			resp.StatusCode, resp.Header.Get("Location"), want, body)
	}

	var form url.Values
	select {
	case form = <-tokens:
	case <-ctx.Done():
		t.Fatal("no back-channel logout request within the test's timeout")
	}
	var lt struct {
		Issuer   string                     `json:"iss"`
		Audience any                        `json:"aud"`
		Subject  string                     `json:"sub"`
		SID      string                     `json:"sid"`
		IssuedAt int64                      `json:"iat"`
		Expiry   int64                      `json:"exp"`
		JTI      string                     `json:"jti"`
		Nonce    *string                    `json:"nonce"`
		Events   map[string]json.RawMessage `json:"events"`
	}
	jwtPayload(t, form.Get("logout_token"), &lt)
	if lt.Issuer != dex.Issuer {
		t.Errorf("logout_token iss = %q, want %q", lt.Issuer, dex.Issuer)
	}
	if lt.Audience != "gatehouse" {
		t.Errorf("logout_token aud = %v, want gatehouse", lt.Audience)
	}
	if lt.Subject == "" || lt.Subject != claims.Subject {
		t.Errorf("logout_token sub = %q, want the ID token's %q", lt.Subject, claims.Subject)
	}
	if lt.SID == "" || lt.SID != claims.SID {
		t.Errorf("logout_token sid = %q, want the ID token's %q", lt.SID, claims.SID)
	}
	if _, ok := lt.Events[backchannelLogoutEvent]; !ok || len(lt.Events) != 1 {
		t.Errorf("logout_token events = %v, want only %s", lt.Events, backchannelLogoutEvent)
	}
	if lt.IssuedAt == 0 || lt.Expiry <= lt.IssuedAt || lt.JTI == "" || lt.Nonce != nil {
		t.Errorf("logout_token iat %d, exp %d, jti %q, nonce %v", lt.IssuedAt, lt.Expiry, lt.JTI, lt.Nonce)
	}
}

// TestDexPersistentRestartRefreshGroups changes alice's groups by restarting
// a persistent Dex. Without sessions a refresh re-reads her through the
// password connector and sees the new groups; with sessions Dex refreshes
// from the claims it cached at login (server/grants/refresh.go), so the
// groups stay those of the login.
func TestDexPersistentRestartRefreshGroups(t *testing.T) {
	for _, tc := range []struct {
		name            string
		disableSessions bool
		want            []string
	}{
		{"without-sessions", true, []string{"staff", "auditors"}},
		{"with-sessions", false, []string{"admins"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := httptest.NewServer(http.NotFoundHandler())
			defer rp.Close()
			callback := rp.URL + "/callback"
			opts := DexOptions{
				Users:           []DexUser{alice("admins")},
				Clients:         []DexClient{{ID: "gatehouse", Secret: "gatehouse-secret", RedirectURIs: []string{callback}}},
				Persistent:      true,
				DisableSessions: tc.disableSessions,
			}
			dex := Dex(t, opts)

			ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
			defer cancel()
			conf := oauthConfig(t, dex, callback)
			tok, first := login(ctx, t, newJarClient(t), conf, callback)
			if diff := cmp.Diff([]string{"admins"}, first.Groups); diff != "" {
				t.Fatalf("groups before restart (-want +got):\n%s", diff)
			}
			if got := first.SID != ""; got == tc.disableSessions {
				t.Errorf("sid %q with DisableSessions %v", first.SID, tc.disableSessions)
			}

			opts.Users = []DexUser{alice("staff", "auditors")}
			dex.Restart(t, opts)

			_, second := refresh(ctx, t, conf, tok.RefreshToken)
			if second.Subject != first.Subject {
				t.Errorf("sub after restart = %q, want %q", second.Subject, first.Subject)
			}
			if diff := cmp.Diff(tc.want, second.Groups); diff != "" {
				t.Errorf("groups after restart and refresh (-want +got):\n%s", diff)
			}
		})
	}
}

type discovery struct {
	AuthorizationEndpoint             string `json:"authorization_endpoint"`
	TokenEndpoint                     string `json:"token_endpoint"`
	EndSessionEndpoint                string `json:"end_session_endpoint"`
	BackchannelLogoutSupported        bool   `json:"backchannel_logout_supported"`
	BackchannelLogoutSessionSupported bool   `json:"backchannel_logout_session_supported"`
}

func discover(ctx context.Context, t *testing.T, issuer string) discovery {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d discovery
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatalf("decoding discovery: %v", err)
	}
	return d
}

func oauthConfig(t *testing.T, dex *DexServer, callback string) *oauth2.Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	d := discover(ctx, t, dex.Issuer)
	return &oauth2.Config{
		ClientID: "gatehouse", ClientSecret: "gatehouse-secret", RedirectURL: callback,
		Endpoint: oauth2.Endpoint{AuthURL: d.AuthorizationEndpoint, TokenURL: d.TokenEndpoint},
		Scopes:   []string{"openid", "email", "profile", "groups", "offline_access"},
	}
}

func newJarClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: e2eTimeout}
}

// login runs the code flow with PKCE as alice through browser and returns the
// tokens and the ID token's claims.
func login(ctx context.Context, t *testing.T, browser *http.Client, conf *oauth2.Config, callback string) (*oauth2.Token, idClaims) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier))
	got, err := Login(ctx, browser, authURL, "alice@example.test", "alice-pw", callback)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if s := got.Query().Get("state"); s != "st-1" {
		t.Fatalf("state = %q, want st-1", s)
	}
	tok, err := conf.Exchange(ctx, got.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchanging the code: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	var c idClaims
	jwtPayload(t, rawID, &c)
	return tok, c
}

// refresh runs the refresh_token grant and returns the new tokens and the new
// ID token's claims.
func refresh(ctx context.Context, t *testing.T, conf *oauth2.Config, refreshToken string) (*oauth2.Token, idClaims) {
	t.Helper()
	tok, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh_token grant: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	var c idClaims
	jwtPayload(t, rawID, &c)
	return tok, c
}

type idClaims struct {
	Issuer  string   `json:"iss"`
	Subject string   `json:"sub"`
	Email   string   `json:"email"`
	Groups  []string `json:"groups"`
	SID     string   `json:"sid"`
}

// jwtPayload decodes a JWT's payload into v without verifying it: these tests
// check the harness, not Dex's signatures.
func jwtPayload(t *testing.T, raw string, v any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWS", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decoding JWT payload: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parsing JWT payload: %v", err)
	}
}
