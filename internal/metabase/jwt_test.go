package metabase

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/metabase/metabasetest"
	"github.com/google/go-cmp/cmp"
)

func decodeClaims(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

// TestMintSSOTokenClaims pins contract 0.A.2 and 6.9: exactly email,
// first_name, last_name, groups (an array of strings), iat = now and exp
// 60 s later, HS256.
func TestMintSSOTokenClaims(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tok, err := MintSSOToken(User{Email: "ana@example.com", DisplayName: "Ana  Maria Lima",
		Groups: []string{"finance", "", "finance", "bi"}}, []byte(testJWTSecret), now)
	if err != nil {
		t.Fatal(err)
	}
	header, claims := decodeClaims(t, tok)
	if header["alg"] != "HS256" {
		t.Errorf("header %v", header)
	}
	want := map[string]any{"email": "ana@example.com", "first_name": "Ana Maria", "last_name": "Lima",
		"groups": []any{"finance", "bi"}, "iat": float64(now.Unix()), "exp": float64(now.Unix() + 60)}
	if d := cmp.Diff(want, claims); d != "" {
		t.Errorf("claims (-want +got):\n%s", d)
	}

	// Nil groups: no claim, memberships untouched (1.6). Empty: [].
	tok, _ = MintSSOToken(User{Email: "a@example.com", FirstName: "A"}, []byte("k"), now)
	if _, c := decodeClaims(t, tok); c["groups"] != nil || c["last_name"] != nil {
		t.Errorf("nil groups / empty last name sent: %v", c)
	}
	tok, _ = MintSSOToken(User{Email: "a@example.com", Groups: []string{}}, []byte("k"), now)
	if _, c := decodeClaims(t, tok); !cmp.Equal(c["groups"], []any{}) {
		t.Errorf("empty groups: %v", c["groups"])
	}

	for _, tc := range []struct {
		name   string
		u      User
		secret string
	}{
		{"no email", User{}, "k"},
		{"no at", User{Email: "ana"}, "k"},
		{"space", User{Email: "a b@example.com"}, "k"},
		{"no secret", User{Email: "a@example.com"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := MintSSOToken(tc.u, []byte(tc.secret), now); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestSplitName(t *testing.T) {
	for _, tc := range []struct{ in, first, last string }{
		{"", "", ""},
		{"   ", "", ""},
		{"Prince", "Prince", ""},
		{"Ana Lima", "Ana", "Lima"},
		{" Ana\tMaria  Lima ", "Ana Maria", "Lima"},
	} {
		if f, l := SplitName(tc.in); f != tc.first || l != tc.last {
			t.Errorf("SplitName(%q) = %q, %q; want %q, %q", tc.in, f, l, tc.first, tc.last)
		}
	}
}

// TestSSOSessionCapturesCookie is the back-channel flow of 0.A.3: the 302's
// metabase.SESSION is captured without following the redirect, and the
// session works as X-Metabase-Session; names and groups are synced.
func TestSSOSessionCapturesCookie(t *testing.T) {
	s, c, clock := jwtEnv(t, nil)
	fin := s.AddGroup("finance")
	tok, err := MintSSOToken(User{Email: "Ana@Example.com", DisplayName: "Ana Lima", Groups: []string{"finance"}},
		[]byte(testJWTSecret), clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.SSOSession(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if !uuidRE.MatchString(key(sess)) || sess.DeviceID == "" {
		t.Errorf("session %+v", sess)
	}
	if want := clock.Now().Add(DefaultMaxSessionAge); !sess.Expires.Equal(want) {
		t.Errorf("Expires %v, want %v (browser-session cookie: MAX_SESSION_AGE)", sess.Expires, want)
	}
	if got := s.Sessions("ana@example.com"); !cmp.Equal(got, []string{key(sess)}) {
		t.Errorf("server sessions %v", got)
	}
	acct, err := c.CurrentUser(t.Context(), sess.Key)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Email != "Ana@Example.com" || acct.FirstName != "Ana" || acct.LastName != "Lima" || acct.SSOSource != "jwt" ||
		!cmp.Equal(acct.GroupIDs, []int{metabasetest.AllUsersGroupID, fin}) {
		t.Errorf("current user %+v", acct)
	}
	// A stable metabase.DEVICE is sent back, and Metabase sets no new one.
	tok, _ = MintSSOToken(User{Email: "ana@example.com"}, []byte(testJWTSecret), clock.Now())
	again, err := c.SSOSession(WithRequestInfo(t.Context(), RequestInfo{ClientIP: netip.MustParseAddr("203.0.113.7"), DeviceID: sess.DeviceID}), tok)
	if err != nil {
		t.Fatal(err)
	}
	if again.DeviceID != sess.DeviceID {
		t.Errorf("device %q, want %q", again.DeviceID, sess.DeviceID)
	}
}

// TestSSOTokenWithWrongSecretRefused pins 1.2: the key is the secret's raw
// UTF-8 bytes, so a token keyed with anything else, such as the
// hex-decoded secret, is refused.
func TestSSOTokenWithWrongSecretRefused(t *testing.T) {
	_, c, clock := jwtEnv(t, nil)
	hexDecoded, err := hex.DecodeString(testJWTSecret)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string][]byte{"other secret": []byte("not-the-secret"), "hex-decoded secret": hexDecoded} {
		t.Run(name, func(t *testing.T) {
			tok, err := MintSSOToken(User{Email: "ana@example.com"}, key, clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.SSOSession(t.Context(), tok); !errors.Is(err, ErrTokenRejected) {
				t.Fatalf("err = %v, want ErrTokenRejected", err)
			}
		})
	}
}

// TestSSOTokenReplayRefused pins 1.3: the token's exp (60 s) ends replays
// early, and iat's 180 s max-age ends them in any case.
func TestSSOTokenReplayRefused(t *testing.T) {
	for _, wait := range []time.Duration{60 * time.Second, 181 * time.Second} {
		t.Run(wait.String(), func(t *testing.T) {
			_, c, clock := jwtEnv(t, nil)
			tok, err := MintSSOToken(User{Email: "ana@example.com"}, []byte(testJWTSecret), clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.SSOSession(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			clock.Advance(59 * time.Second)
			if _, err := c.SSOSession(t.Context(), tok); err != nil {
				t.Fatalf("replay within exp: %v", err)
			}
			clock.Advance(wait - 59*time.Second)
			if _, err := c.SSOSession(t.Context(), tok); !errors.Is(err, ErrTokenRejected) {
				t.Fatalf("replay after %v: err = %v, want ErrTokenRejected", wait, err)
			}
		})
	}
}

// TestSSOSessionErrorClasses pins 1.1, 1.4 and 1.8 status by status.
func TestSSOSessionErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*metabasetest.Options)
		want error
	}{
		{"oss edition", func(o *metabasetest.Options) { o.Edition = metabasetest.OSS }, ErrSSOUnavailable},
		{"jwt disabled", func(o *metabasetest.Options) { o.JWTEnabled = false }, ErrSSODisabled},
		{"provisioning off", func(o *metabasetest.Options) { o.JWTProvisioningDisabled = true }, ErrNoAccount},
		{"site-url elsewhere is fine for /", func(o *metabasetest.Options) { o.SiteURL = "https://bi.example.com" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c, clock := jwtEnv(t, tc.mod)
			tok, _ := MintSSOToken(User{Email: "new@example.com"}, []byte(testJWTSecret), clock.Now())
			_, err := c.SSOSession(t.Context(), tok)
			if !errors.Is(err, tc.want) && (tc.want != nil || err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	_, c, _ := jwtEnv(t, nil)
	if _, err := c.SSOSession(t.Context(), "not.a.jwt"); !errors.Is(err, ErrTokenRejected) {
		t.Errorf("garbage token: %v", err)
	}
	s, c, _ := jwtEnv(t, nil)
	s.SetInitializing(true)
	// /auth/sso is not under /api, so it is not blocked while initializing.
	if _, err := c.SSOSession(t.Context(), "x.y.z"); !errors.Is(err, ErrTokenRejected) {
		t.Errorf("initializing: %v", err)
	}
}

// TestSSODoesNotReactivateWithoutWarning documents contract 6.13: with
// provisioning on, a JWT login reactivates a deactivated user. The caller
// must not mint tokens for deprovisioned users.
func TestSSOReactivatesDeactivatedUser(t *testing.T) {
	s, c, clock := jwtEnv(t, nil)
	u := s.AddUser(metabasetest.NewUser{Email: "gone@example.com"})
	if err := c.Deactivate(t.Context(), u.ID); err != nil {
		t.Fatal(err)
	}
	tok, _ := MintSSOToken(User{Email: "gone@example.com"}, []byte(testJWTSecret), clock.Now())
	if _, err := c.SSOSession(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.User("gone@example.com"); !got.Active {
		t.Error("contract 1.4: JWT login with provisioning on reactivates; the double did not")
	}
}
