package metabase

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/secret"
)

// Session is a Metabase session (contract 1.7, 2.4). Its key is a
// credential: send it upstream as X-Metabase-Session (stripping the
// browser's metabase.SESSION cookie, which would win, 2.1) or set it as the
// browser's metabase.SESSION cookie, and DELETE it at logout (6.11).
type Session struct {
	// Key is the session key, a UUID. It prints as [redacted].
	Key secret.Value
	// Expires is the cookie's expiry when Metabase gave one, else the time
	// it was obtained (by the Client's clock) plus MAX_SESSION_AGE: Metabase's limit is absolute and cannot be
	// extended (2.3). Metabase may end the session earlier (logout,
	// password change, deactivation).
	Expires time.Time
	// DeviceID is the metabase.DEVICE cookie Metabase set, or the one sent
	// through RequestInfo; empty when neither. Keep it per browser.
	DeviceID string
}

// session builds a Session from a key and the response's cookies.
func (c *Client) session(key string, r *response) Session {
	now := c.now()
	s := Session{Key: secret.NewValue([]byte(key)), Expires: now.Add(c.maxAge)}
	for _, ck := range r.cookies {
		switch ck.Name {
		case SessionCookie:
			switch {
			case ck.MaxAge > 0:
				s.Expires = now.Add(time.Duration(ck.MaxAge) * time.Second)
			case ck.MaxAge == 0 && !ck.Expires.IsZero():
				s.Expires = ck.Expires
			}
			if s.Expires.After(now.Add(c.maxAge)) {
				s.Expires = now.Add(c.maxAge)
			}
		case deviceCookie:
			if uuidRE.MatchString(ck.Value) {
				s.DeviceID = ck.Value
			}
		}
	}
	return s
}

func deviceFrom(ctx context.Context, s Session) Session {
	if s.DeviceID == "" {
		if info, ok := ctx.Value(requestInfoKey{}).(RequestInfo); ok {
			s.DeviceID = info.DeviceID
		}
	}
	return s
}

// Metabase messages the client tells apart (contract 1.8, 2.4). Bodies are
// [inferred] for some, so each is a fragment, matched case-insensitively.
var (
	msgNotEnabledNew = "jwt authentication is not enabled"
	msgNotEnabledOld = "has not been enabled"
	msgNoAccount     = "you'll need a metabase account"
	msgPasswordOff   = "password login is disabled"
	throttleRE       = regexp.MustCompile(`(?i)too many attempts.*?wait\s+(\d+)\s+seconds`)
)

// SSOSession signs a user in through JWT SSO on the back channel (contract
// 0.A.3): GET /auth/sso?jwt=…&return_to=/ without following the redirect,
// capturing the metabase.SESSION cookie of the 302. jwt comes from
// MintSSOToken. Errors wrap ErrSSOUnavailable (402), ErrSSODisabled,
// ErrTokenRejected, ErrNoAccount, ErrNoSession,
// ErrUnavailable, ErrTransport or ErrUnexpected.
//
// With jwt-user-provisioning-enabled? on, Metabase creates unknown users
// and reactivates deactivated ones (1.4, 6.13): do not call this for a user
// that must stay deprovisioned. Group sync happens here and only here
// (1.6, 6.12).
func (c *Client) SSOSession(ctx context.Context, jwt string) (Session, error) {
	cl := call{method: http.MethodGet, path: "/auth/sso", query: url.Values{"jwt": {jwt}, "return_to": {"/"}}, secrets: []string{jwt}}
	if jwt == "" {
		return Session{}, &Error{Op: c.op(cl), Kind: ErrTokenRejected, Detail: "empty token"}
	}
	r, err := c.do(ctx, cl)
	if err != nil {
		return Session{}, err
	}
	text := strings.ToLower(string(r.body))
	switch r.status {
	case http.StatusFound:
		for _, ck := range r.cookies {
			if ck.Name == SessionCookie && uuidRE.MatchString(ck.Value) && ck.MaxAge >= 0 {
				return deviceFrom(ctx, c.session(ck.Value, r)), nil
			}
		}
		// SAML enabled too wins the dispatch and redirects to its IdP (1.1).
		return Session{}, &Error{Op: c.op(cl), Status: r.status, Kind: ErrNoSession, Detail: "302 without a metabase.SESSION cookie (is SAML enabled too?)"}
	case http.StatusPaymentRequired:
		return Session{}, &Error{Op: c.op(cl), Status: r.status, Kind: ErrSSOUnavailable}
	case http.StatusUnauthorized:
		e := c.fail(cl, r)
		switch {
		case strings.Contains(text, msgNotEnabledNew):
			e.Kind = ErrSSODisabled
		case strings.Contains(text, msgNoAccount):
			e.Kind = ErrNoAccount
		default:
			e.Kind = ErrTokenRejected
		}
		return Session{}, e
	case http.StatusBadRequest:
		e := c.fail(cl, r)
		switch {
		case strings.Contains(text, msgNotEnabledOld):
			e.Kind = ErrSSODisabled // older versions (1.1)
		}
		return Session{}, e
	}
	return Session{}, c.fail(cl, r)
}

// Login signs in with a password: POST /api/session (contract 2.4). Errors
// wrap ErrBadCredentials, ErrThrottled (with RetryAfter; never retry it in
// a loop: only failures count, and each one lengthens the wait),
// ErrAccountDisabled, ErrPasswordLoginDisabled, ErrBadRequest,
// ErrUnavailable, ErrTransport or ErrUnexpected.
func (c *Client) Login(ctx context.Context, email, password string) (Session, error) {
	cl := call{method: http.MethodPost, path: "/api/session",
		body: map[string]string{"username": email, "password": password}, secrets: []string{password}}
	r, err := c.do(ctx, cl)
	if err != nil {
		return Session{}, err
	}
	if r.status == http.StatusOK {
		var out struct {
			ID string `json:"id"`
		}
		if err := c.decode(cl, r, &out); err != nil {
			return Session{}, err
		}
		if !uuidRE.MatchString(out.ID) {
			return Session{}, &Error{Op: c.op(cl), Status: r.status, Kind: ErrNoSession, Detail: "session id is not a uuid"}
		}
		return deviceFrom(ctx, c.session(out.ID, r)), nil
	}
	e := c.fail(cl, r)
	text := string(r.body)
	switch {
	case strings.Contains(strings.ToLower(text), msgPasswordOff):
		e.Kind = ErrPasswordLoginDisabled
	case r.status != http.StatusUnauthorized:
	case throttleRE.MatchString(text):
		e.Kind = ErrThrottled
		if n, err := strconv.Atoi(throttleRE.FindStringSubmatch(text)[1]); err == nil && n < math.MaxInt32 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	case strings.Contains(strings.ToLower(text), "disabled") || strings.Contains(strings.ToLower(text), "deactivated"):
		e.Kind = ErrAccountDisabled
	default:
		e.Kind = ErrBadCredentials
	}
	return Session{}, e
}

// Logout deletes the session: DELETE /api/session with X-Metabase-Session
// (contract 2.4, 6.11). A 404, the session already gone, counts as success.
func (c *Client) Logout(ctx context.Context, key secret.Value) error {
	k := string(key.Reveal())
	cl := call{method: http.MethodDelete, path: "/api/session", auth: authSession, session: k}
	if !uuidRE.MatchString(k) {
		return &Error{Op: c.op(cl), Kind: ErrInvalidSessionKey}
	}
	r, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	switch r.status {
	case http.StatusNoContent, http.StatusOK, http.StatusNotFound:
		return nil
	}
	return c.fail(cl, r)
}

// CurrentUser returns the session's user: GET /api/user/current (2.4).
// A dead session gives ErrUnauthenticated.
func (c *Client) CurrentUser(ctx context.Context, key secret.Value) (Account, error) {
	k := string(key.Reveal())
	cl := call{method: http.MethodGet, path: "/api/user/current", auth: authSession, session: k}
	if !uuidRE.MatchString(k) {
		return Account{}, &Error{Op: c.op(cl), Kind: ErrInvalidSessionKey}
	}
	r, err := c.do(ctx, cl)
	if err != nil {
		return Account{}, err
	}
	if r.status != http.StatusOK {
		return Account{}, c.fail(cl, r)
	}
	var a accountJSON
	if err := c.decode(cl, r, &a); err != nil {
		return Account{}, err
	}
	return a.account(), nil
}
