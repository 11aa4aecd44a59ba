package session

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSessionCookieAttributes(t *testing.T) {
	tests := []struct {
		name   string
		secure bool
		maxAge time.Duration
		want   string
	}{
		{"https", true, 12 * time.Hour, "__Host-gh_session=v; Path=/; Max-Age=43200; HttpOnly; Secure; SameSite=Lax"},
		{"https, browser session", true, 0, "__Host-gh_session=v; Path=/; HttpOnly; Secure; SameSite=Lax"},
		{"sub-second max age rounds up", true, 1500 * time.Millisecond, "__Host-gh_session=v; Path=/; Max-Age=2; HttpOnly; Secure; SameSite=Lax"},
		{"plain http drops the prefix", false, time.Hour, "gh_session=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := SessionCookie("gh_session", "v", tt.secure, tt.maxAge)
			if got := c.String(); got != tt.want {
				t.Errorf("Set-Cookie: %s\nwant:       %s", got, tt.want)
			}
			if c.Domain != "" {
				t.Error("Domain set")
			}
			if err := c.Valid(); err != nil {
				t.Errorf("Valid: %v", err)
			}
		})
	}
}

func TestDeleteCookie(t *testing.T) {
	want := "__Host-gh_session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
	if got := DeleteCookie("gh_session", true).String(); got != want {
		t.Errorf("Set-Cookie: %s\nwant:       %s", got, want)
	}
}

// TestSessionCookieCarriesMaxSizedValue checks that the largest sealed value
// still fits the 4096-byte budget with the name and every attribute.
func TestSessionCookieCarriesMaxSizedValue(t *testing.T) {
	c := mustCodec(t, "k1")
	n := 0
	for c.sealedLen(n+1) <= MaxCookieValue {
		n++
	}
	v, err := c.Seal(sessionPurpose, make([]byte, n))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("n", maxCookieName)
	cookie := SessionCookie(name, v, true, 365*24*time.Hour)
	cookie.Expires = time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)
	if got := len(cookie.String()); got > 4096 {
		t.Errorf("Set-Cookie is %d bytes, over 4096", got)
	}
	r := &http.Request{Header: http.Header{"Cookie": {CookieName(name, true) + "=" + v}}}
	if got, err := r.Cookie(CookieName(name, true)); err != nil || got.Value != v {
		t.Errorf("reading the cookie back: %v", err)
	}
}
