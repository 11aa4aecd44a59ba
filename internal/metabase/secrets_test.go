package metabase

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/metabase/metabasetest"
	"github.com/gatehouse-proxy/gatehouse/internal/secret"
)

// Known secret values, with characters that change under URL and JSON
// escaping.
const (
	leakSession  = "6f1c3a3e-8a1b-4b7e-9a53-2f1d8f6f2c99"
	leakAPIKey   = "mb_LEAKme+/apikey=="
	leakPassword = `p@ss"w<rd>&1 leak`
)

var leakJWT = func() string {
	tok, err := MintSSOToken(User{Email: "leak@example.com"}, []byte("leak-secret"), time.Now())
	if err != nil {
		panic(err)
	}
	return tok
}()

// echoServer answers every request with the given status and a body that
// reflects the request's URL, headers and body, in text or JSON, the worst
// a Metabase (or something in front of it) could do.
func echoServer(t *testing.T, status int, asJSON bool) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		text := fmt.Sprintf("url=%s raw=%s headers=%v body=%s", r.URL.String(), r.URL.RawQuery, r.Header, b)
		if asJSON {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": map[string]string{"password": text, "username": "Too many attempts! " + text}})
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, text)
	}))
	t.Cleanup(s.Close)
	return s
}

// everyCall calls each Client method with the known secrets and returns
// the errors by name.
func everyCall(ctx context.Context, c *Client) map[string]error {
	sk := secret.NewValue([]byte(leakSession))
	errs := map[string]error{}
	_, errs["SSOSession"] = c.SSOSession(ctx, leakJWT)
	_, errs["Login"] = c.Login(ctx, "ana@example.com", leakPassword)
	errs["Logout"] = c.Logout(ctx, sk)
	_, errs["CurrentUser"] = c.CurrentUser(ctx, sk)
	_, errs["FindUser"] = c.FindUser(ctx, "ana@example.com")
	_, errs["GetUser"] = c.GetUser(ctx, 7)
	_, errs["CreateUser"] = c.CreateUser(ctx, NewAccount{Email: "ana@example.com", Password: leakPassword})
	_, errs["UpdateUser"] = c.UpdateUser(ctx, 7, AccountUpdate{})
	_, errs["SetGroups"] = c.SetGroups(ctx, 7, []int{3})
	errs["SetPassword"] = c.SetPassword(ctx, 7, leakPassword)
	errs["Deactivate"] = c.Deactivate(ctx, 7)
	_, errs["Reactivate"] = c.Reactivate(ctx, 7)
	_, errs["ListGroups"] = c.ListGroups(ctx)
	return errs
}

func assertNoSecrets(t *testing.T, name string, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, text := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		for _, sec := range secrets {
			for _, form := range []string{sec, url.QueryEscape(sec), url.PathEscape(sec)} {
				if strings.Contains(text, form) {
					t.Errorf("%s: error text contains a secret (%q): %s", name, form, text)
				}
			}
		}
	}
}

var allLeaks = []string{leakSession, leakAPIKey, leakPassword, leakJWT, "leak-secret"}

// TestSessionKeyNeverInErrors, and the other credentials with it: every
// error path of every call, against a server that echoes the request in its
// error bodies, and against no server at all (Go's *url.Error prints the
// whole URL, which for /auth/sso holds the JWT).
func TestSessionKeyNeverInErrors(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusFound, http.StatusPaymentRequired, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		for _, asJSON := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/json=%v", status, asJSON), func(t *testing.T) {
				s := echoServer(t, status, asJSON)
				c, err := New(Options{BaseURL: s.URL, APIKey: secret.NewValue([]byte(leakAPIKey))})
				if err != nil {
					t.Fatal(err)
				}
				for name, err := range everyCall(t.Context(), c) {
					if err == nil && (name != "Logout" || status != http.StatusNotFound) { // Logout: 404 is success
						t.Errorf("%s: no error on %d", name, status)
					}
					assertNoSecrets(t, name, err, allLeaks...)
				}
			})
		}
	}
	t.Run("transport", func(t *testing.T) {
		s := httptest.NewServer(http.NotFoundHandler())
		base := s.URL
		s.Close()
		c, err := New(Options{BaseURL: base, APIKey: secret.NewValue([]byte(leakAPIKey))})
		if err != nil {
			t.Fatal(err)
		}
		for name, err := range everyCall(t.Context(), c) {
			if err == nil {
				t.Errorf("%s: no error", name)
			}
			assertNoSecrets(t, name, err, allLeaks...)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		s := echoServer(t, http.StatusOK, false)
		c, _ := New(Options{BaseURL: s.URL, APIKey: secret.NewValue([]byte(leakAPIKey))})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for name, err := range everyCall(ctx, c) {
			if err == nil || !strings.Contains(err.Error(), "context canceled") {
				t.Errorf("%s: %v", name, err)
			}
			assertNoSecrets(t, name, err, allLeaks...)
		}
	})
}

// TestBrokerPasswordNeverInErrorsOrLogs: the derived password and the
// broker key stay out of the broker's errors and logs on every path.
func TestBrokerPasswordNeverInErrorsOrLogs(t *testing.T) {
	s, c, _ := ossEnv(t)
	s.AddUser(metabasetest.NewUser{Email: "local@example.com", Password: "human-password-1"})
	b, logs := newBroker(t, c, func(o *BrokerOptions) { o.GroupMap = map[string]string{"x": "Nope"} })
	pw := b.Password(ana.Issuer, ana.Subject, 0)
	_, err := b.SignIn(t.Context(), ana)
	assertNoSecrets(t, "unknown group", err, pw, testBrokerKey, testAdminKey)
	b, logs2 := newBroker(t, c, nil)
	local := ana
	local.Email = "local@example.com"
	_, err = b.SignIn(t.Context(), local)
	assertNoSecrets(t, "not brokered", err, b.Password(local.Issuer, local.Subject, 0), testBrokerKey, testAdminKey)
	for range 10 {
		_, _ = c.Login(t.Context(), "local@example.com", "guess-1")
	}
	_, err = b.SignIn(t.Context(), local)
	assertNoSecrets(t, "throttled", err, b.Password(local.Issuer, local.Subject, 0), testBrokerKey, testAdminKey)
	if _, err := b.SignIn(t.Context(), ana); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{logs.String(), logs2.String()} {
		for _, sec := range []string{pw, testBrokerKey, testAdminKey} {
			if strings.Contains(l, sec) {
				t.Errorf("log contains a secret: %s", l)
			}
		}
	}
	if !strings.Contains(logs2.String(), "created user") {
		t.Errorf("expected a creation log line: %q", logs2.String())
	}
}

// TestSessionPrintsRedacted: a Session printed by accident shows no key.
func TestSessionPrintsRedacted(t *testing.T) {
	s := Session{Key: secret.NewValue([]byte(leakSession)), DeviceID: "d"}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, leakSession) {
			t.Errorf("%s: %s", f, out)
		}
	}
	if b, _ := json.Marshal(s); strings.Contains(string(b), leakSession) {
		t.Errorf("json: %s", b)
	}
}

// FuzzDetailRedacts: whatever a server answers, the excerpt in an error
// never contains the call's secret.
func FuzzDetailRedacts(f *testing.F) {
	f.Add([]byte(`{"errors":{"password":"sekret-123"}}`), "sekret-123", "application/json")
	f.Add([]byte("x sek\x00ret-123 y"), "sek ret-123", "text/plain")
	f.Add([]byte(`{"message":"a\u0000b"}`), "a b", "application/json")
	f.Fuzz(func(t *testing.T, body []byte, sec, ct string) {
		if len(sec) < 4 || strings.Contains("[redacted]…", sec) {
			return
		}
		if got := detail(body, ct, []string{sec}); strings.Contains(got, sec) {
			t.Errorf("detail(%q) = %q contains %q", body, got, sec)
		}
	})
}
