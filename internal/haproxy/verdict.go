package haproxy

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/canon"
	"github.com/gatehouse-proxy/gatehouse/internal/proxy"
)

// Reasons decided here, before the route's check. The refusals the proxy
// also makes (bad host or path, no route, TRACE and CONNECT) carry the
// proxy's codes (proxy.ReasonBadHost and the others).
const (
	ReasonEndpoint = "gatehouse-path" // a /.gatehouse/ path: the front end must send it to gatehouse's listener
	// ReasonBadMessage: a NOTIFY without a check-auth message carrying
	// method, host, path and src (haproxy.cfg does not match the agent).
	ReasonBadMessage = "bad-spoe-message"
)

// Router finds the route for a canonical host and path in the running
// configuration; nil when none matches.
type Router func(host, path string) *auth.Route

// Query is a request as a front end describes it, before canonicalization.
type Query struct {
	// Method is the request method.
	Method string
	// Host is the Host header (or HTTP/2 :authority) as sent.
	Host string
	// Path is the request path as sent, still percent-encoded, without the
	// query.
	Path string
	// RawQuery is the query without '?'.
	RawQuery string
	// Source is the client's address.
	Source netip.Addr
	// TLS reports that the client connection is TLS.
	TLS bool
	// Cookie and Authorization are the client's headers.
	Cookie, Authorization string
	// Session is the session cookie's value alone, for front ends that
	// send only that (SPOE's req.cook(), which keeps the NOTIFY small).
	// Used when Cookie is empty.
	Session string
	// API marks a program rather than a page navigation (see
	// auth.IsAPIRequest): it gets 401, never a sign-in redirect.
	API bool
}

// Verdict is the decision on a Query.
type Verdict struct {
	// Allow reports that the request may go on.
	Allow bool
	// Status is the answer when Allow is false: 302 (sign in; see
	// Location), 400, 401, 403, 404, 405 or 503.
	Status int
	// Location is the sign-in URL for a 302.
	Location string
	// WWWAuthenticate is the challenge for a 401.
	WWWAuthenticate string
	// Path is the canonical path, set only when it differs from
	// Query.Path: the front end must forward this one, the path the
	// policy was applied to.
	Path string
	// Headers are the identity headers to set (when Allow); with a route
	// that passes the user's access token, one is Authorization.
	Headers []auth.Header
	// Cookie is the client's Cookie header without gatehouse's cookies,
	// for the app; CookieChanged reports that it differs from the
	// client's (it may then be empty: drop the header).
	Cookie        string
	CookieChanged bool
	// KeepAuthorization reports that the route forwards the client's
	// Authorization header; otherwise the front end must remove it.
	KeepAuthorization bool
	// SetCookies go to the client with the response: a refreshed or
	// touched session, or the deletion of a bad one.
	SetCookies []*http.Cookie
	// Reason explains the decision (kebab-case, as in audit records).
	Reason string
	// Gate is the gate that decided (nil when no route matched), for the
	// header and cookie names.
	Gate *auth.Gate
	// Wait reports that decide was asked not to wait and deciding needs
	// I/O (see auth.Request.NoWait); nothing else is set.
	Wait bool
}

// decide canonicalizes q, finds its route and runs the route's check, the
// same one the proxy runs; it fills rec with the decision.
func decide(ctx context.Context, route Router, q *Query, rec *audit.Record, noWait bool) *Verdict {
	v := &Verdict{}
	rec.Method = truncate(q.Method, 32)
	rec.ClientIP = q.Source
	rec.TLS = q.TLS
	host, err := canon.Host(q.Host, q.TLS)
	if err != nil {
		rec.Host = truncate(q.Host, 256)
		rec.Path = truncate(q.Path, 256)
		return v.refuse(rec, http.StatusBadRequest, proxy.ReasonBadHost)
	}
	rec.Host = host
	path, err := canon.Path(q.Path)
	if err != nil {
		rec.Path = truncate(q.Path, 256)
		return v.refuse(rec, http.StatusBadRequest, proxy.ReasonBadPath)
	}
	rec.Path = path
	if path != q.Path {
		v.Path = path
	}
	if q.Method == http.MethodTrace || q.Method == http.MethodConnect {
		return v.refuse(rec, http.StatusMethodNotAllowed, proxy.ReasonMethod)
	}
	if proxy.IsInternalPath(path) {
		return v.refuse(rec, http.StatusNotFound, ReasonEndpoint)
	}
	rt := route(host, path)
	if rt == nil {
		return v.refuse(rec, http.StatusNotFound, proxy.ReasonNoRoute)
	}
	rec.Route = rt.Name()
	v.Gate = rt.Gate()
	cookie := q.Cookie
	if cookie == "" && q.Session != "" {
		cookie = v.Gate.SessionCookieName() + "=" + q.Session
	}
	out := rt.Check(ctx, &auth.Request{
		Method:        q.Method,
		Host:          host,
		Path:          path,
		RawQuery:      q.RawQuery,
		Source:        q.Source,
		Cookie:        cookie,
		Authorization: q.Authorization,
		API:           q.API,
		Relayed:       true,
		NoWait:        noWait,
	})
	if out.Wait {
		return &Verdict{Wait: true}
	}
	if p := out.Principal; p != nil {
		rec.AuthMethod, rec.Issuer, rec.Subject, rec.Email, rec.Groups = p.Method, p.Issuer, p.Subject, p.Email, p.Groups
	}
	rec.Rule, rec.Reason = out.Rule, out.Reason
	v.Reason = out.Reason
	v.SetCookies = out.SetCookies
	if out.Allow {
		v.Allow = true
		v.Headers = out.Headers
		if q.Cookie != "" {
			v.Cookie = v.Gate.StripCookies(q.Cookie)
			v.CookieChanged = v.Cookie != q.Cookie
		}
		v.KeepAuthorization = rt.PassAuthorization()
		rec.Decision = audit.DecisionAllow
		rec.Status = http.StatusOK
		return v
	}
	v.Status, v.Location, v.WWWAuthenticate = out.Status, out.Location, out.WWWAuthenticate
	rec.Status = out.Status
	switch out.Status {
	case http.StatusFound:
		rec.Decision = audit.DecisionRedirect
	case http.StatusUnauthorized, http.StatusForbidden:
		rec.Decision = audit.DecisionDeny
	default:
		rec.Decision = audit.DecisionError
	}
	return v
}

// overrule turns a verdict into a refusal after the check ran: the
// identity it found no longer applies, but cookies it set still go out.
func (v *Verdict) overrule(rec *audit.Record, status int, reason string) *Verdict {
	rec.AuthMethod, rec.Issuer, rec.Subject, rec.Email, rec.Groups, rec.Rule = "", "", "", "", nil, ""
	return (&Verdict{SetCookies: v.SetCookies, Gate: v.Gate}).refuse(rec, status, reason)
}

func (v *Verdict) refuse(rec *audit.Record, status int, reason string) *Verdict {
	v.Status, v.Reason = status, reason
	rec.Status, rec.Reason = status, reason
	rec.Decision = audit.DecisionDeny
	if status >= 500 {
		rec.Decision = audit.DecisionError
	}
	return v
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
