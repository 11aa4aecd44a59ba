package metabase

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Sentinel errors. Every error the package returns for a Metabase response
// is an *Error that wraps one of these, so callers test with errors.Is.
var (
	// ErrSSOUnavailable is 402 from /auth/sso: the edition lacks the paid
	// sso-jwt feature (contract 1.1).
	ErrSSOUnavailable = errors.New("jwt sso needs the paid sso-jwt feature")
	// ErrSSODisabled is JWT SSO not enabled or not configured: 401 "JWT
	// authentication is not enabled" in the newest code, 400 in older
	// versions (1.1).
	ErrSSODisabled = errors.New("jwt sso is not enabled")
	// ErrTokenRejected is a 401 for the token itself: signature, alg, format,
	// exp, nbf, iat older than 180 s, or no email claim (1.3, 1.8).
	ErrTokenRejected = errors.New("jwt rejected")
	// ErrNoAccount is the 401 for an unknown or deactivated user when
	// jwt-user-provisioning-enabled? is off (1.4).
	ErrNoAccount = errors.New("no metabase account and provisioning is off")
	// ErrNoSession is a successful-looking reply that carries no usable
	// session key, such as a 302 without a metabase.SESSION cookie (which is
	// what /auth/sso answers when SAML is enabled too and wins the
	// dispatch, 1.1).
	ErrNoSession = errors.New("no session in response")
	// ErrBadCredentials is 401 {"errors":{"password":…}} from POST
	// /api/session (2.4).
	ErrBadCredentials = errors.New("bad credentials")
	// ErrThrottled is 401 {"errors":{"username":"Too many attempts!…"}}
	// (2.4). The *Error carries RetryAfter when Metabase says how long to
	// wait. Never retry automatically: every failed attempt extends the
	// delay.
	ErrThrottled = errors.New("login throttled")
	// ErrAccountDisabled is the 401 for a deactivated account whose
	// password matched [inferred body].
	ErrAccountDisabled = errors.New("account is deactivated")
	// ErrPasswordLoginDisabled is "Password login is disabled for this
	// instance." (2.4, paid setting enable-password-login).
	ErrPasswordLoginDisabled = errors.New("password login is disabled")
	// ErrUnauthenticated is 401 "Unauthenticated": a missing, wrong or
	// revoked API key or session (2.1).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden is 403: the API key is not in Administrators (3.2).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound is 404, for example PUT /api/user/:id on a deactivated
	// user (3.3).
	ErrNotFound = errors.New("not found")
	// ErrBadRequest is any other 400; the *Error's Detail names the fields.
	ErrBadRequest = errors.New("bad request")
	// ErrUnavailable is 503: Metabase is initializing or its app DB is
	// down (2.4).
	ErrUnavailable = errors.New("metabase unavailable")
	// ErrUnexpected is a status the contract does not list for the call.
	ErrUnexpected = errors.New("unexpected response")
	// ErrTransport is a failure before any response: dial, TLS, timeout,
	// context cancellation. The *Error wraps the cause too.
	ErrTransport = errors.New("transport error")

	// ErrUserNotFound is FindUser finding no user with the email.
	ErrUserNotFound = errors.New("user not found")
	// ErrUserDeactivated is a broker sign-in of a deactivated user, refused
	// unless BrokerOptions.ReactivateDeactivated is set.
	ErrUserDeactivated = errors.New("user is deactivated")
	// ErrNotBrokered is a broker refusing to reset the password of an
	// account it did not create for this identity (see
	// BrokerOptions.AdoptExistingAccounts).
	ErrNotBrokered = errors.New("account is not managed by this broker for this identity")
	// ErrUnknownGroup is a GroupMap value naming no Metabase group; the
	// *UnknownGroupError names it.
	ErrUnknownGroup = errors.New("unknown metabase group")
	// ErrInvalidSessionKey is a session key that is not a UUID; Metabase
	// would ignore it (2.1), so the request is not sent.
	ErrInvalidSessionKey = errors.New("session key is not a uuid")
)

// Error is a failed call to Metabase. Its text never contains a session key,
// API key, JWT or password: the request URL is reduced to its path, and the
// response excerpt in Detail has the call's secrets replaced by
// [redacted].
type Error struct {
	// Op is the call, such as "POST /api/session".
	Op string
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Kind is the sentinel (ErrThrottled, ErrNotFound, …).
	Kind error
	// Detail is a short, sanitized excerpt of the response body.
	Detail string
	// RetryAfter is the wait Metabase asked for, with ErrThrottled.
	RetryAfter time.Duration
	// Err is the underlying cause, for ErrTransport.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("metabase: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (status %d)", e.Status)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns Kind and, for transport errors, the cause.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// UnknownGroupError is a GroupMap value that names no Metabase group.
type UnknownGroupError struct {
	// Name is the Metabase group name from the GroupMap.
	Name string
}

func (e *UnknownGroupError) Error() string {
	return fmt.Sprintf("metabase: group %q (named in the group map) does not exist in metabase", e.Name)
}

// Unwrap returns ErrUnknownGroup.
func (e *UnknownGroupError) Unwrap() error { return ErrUnknownGroup }

// maxDetail bounds Error.Detail.
const maxDetail = 200

// detail turns a response body into a short, printable, redacted excerpt.
// A Metabase {"errors":{field: message}} body becomes "field: message; …";
// HTML becomes nothing (1.1: POST /auth/sso renders an HTML page).
func detail(body []byte, contentType string, secrets []string) string {
	if strings.HasPrefix(contentType, "text/html") {
		return ""
	}
	s := string(body)
	var e struct {
		Errors  map[string]any `json:"errors"`
		Message string         `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		switch {
		case len(e.Errors) > 0:
			keys := make([]string, 0, len(e.Errors))
			for k := range e.Errors {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			parts := make([]string, 0, len(keys))
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s: %v", k, e.Errors[k]))
			}
			s = strings.Join(parts, "; ")
		case e.Message != "":
			s = e.Message
		}
	}
	s = redact(s, secrets)
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxDetail {
		s = strings.ToValidUTF8(s[:maxDetail], "") + "…"
	}
	// Redact again: truncation cannot create a secret, but the Map above
	// could join pieces of one that a control character had split.
	return redact(s, secrets)
}

// redact replaces every occurrence of each non-empty secret with
// [redacted], in its raw, URL-query-escaped and JSON-escaped forms (a server
// may echo any of them).
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		forms := []string{sec, url.QueryEscape(sec), url.PathEscape(sec)}
		if j, err := json.Marshal(sec); err == nil {
			forms = append(forms, strings.Trim(string(j), `"`))
		}
		for _, f := range forms {
			s = strings.ReplaceAll(s, f, "[redacted]")
		}
	}
	return s
}
