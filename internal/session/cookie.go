package session

import (
	"net/http"
	"time"
)

// hostPrefix makes a browser accept the cookie only with Secure, Path=/ and
// no Domain, from a secure origin (RFC 6265bis §4.1.3.2), so that no
// sibling subdomain or plain-HTTP page can set or shadow it.
const hostPrefix = "__Host-"

// CookieName returns the name under which a cookie named name is set and
// sent: "__Host-" + name over HTTPS, name itself otherwise. Browsers refuse a
// __Host- cookie without Secure, so plain HTTP (local development only) gets
// no prefix.
func CookieName(name string, secure bool) string {
	if secure {
		return hostPrefix + name
	}
	return name
}

// SessionCookie returns the cookie that carries value: named
// CookieName(name, secure), with Secure when secure, HttpOnly, SameSite=Lax,
// Path=/ and no Domain (security-notes §4.2). Name is given without the
// prefix. A positive maxAge sets Max-Age, rounded up to a whole second; zero
// leaves it out, which makes the cookie last until the browser closes.
//
// SameSite=Lax, not Strict: with Strict, the first navigation to gatehouse
// from a link on another site would arrive without the session.
func SessionCookie(name, value string, secure bool, maxAge time.Duration) *http.Cookie {
	// Secure follows secure: plain HTTP is for local development only.
	c := &http.Cookie{ //nolint:gosec // G124: see above
		Name:     CookieName(name, secure),
		Value:    value,
		Path:     "/",
		Secure:   secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
	if maxAge > 0 {
		c.MaxAge = int((maxAge + time.Second - 1) / time.Second)
	}
	return c
}

// DeleteCookie returns the cookie that deletes the one SessionCookie(name,
// ..., secure, ...) set: the same name and attributes, an empty value,
// Max-Age=0 and an Expires in 1970 for old clients. Deleting the cookie does
// not end the session; revoke it as well.
func DeleteCookie(name string, secure bool) *http.Cookie {
	c := SessionCookie(name, "", secure, 0) //nolint:gosec // G124: the attributes are SessionCookie's
	// net/http writes a negative MaxAge as Max-Age=0.
	c.MaxAge = -1
	c.Expires = time.Unix(1, 0)
	return c
}
