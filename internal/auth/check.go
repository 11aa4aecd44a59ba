package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/oidc"
	"github.com/gatehouse-proxy/gatehouse/internal/policy"
	"github.com/gatehouse-proxy/gatehouse/internal/session"
	"github.com/gatehouse-proxy/gatehouse/internal/token"
)

// Request is what Check looks at: the canonical request view and the
// credentials, however the request arrived (proxied, SPOE, forward-auth).
type Request struct {
	// Method, Host and Path are canonical (see package canon).
	Method, Host, Path string
	// RawQuery is the query, used only to return the user after sign-in.
	RawQuery string
	// Source is the client address as established by the trusted front
	// end.
	Source netip.Addr
	// Cookie is the Cookie header (several headers joined with "; ").
	Cookie string
	// Authorization is the Authorization header.
	Authorization string
	// API reports that the client is a program (or a script), which gets
	// 401 instead of a redirect to sign in.
	API bool
	// NoWait asks Check not to wait on the network: when deciding would
	// (a session refresh is due, a bearer token to verify, a session store
	// that is a network database), Check does nothing and returns an
	// Outcome with Wait set, and the caller calls it again without NoWait
	// where waiting is fine. The SPOE agent decides on its connection's
	// reader this way, and only hands slow verdicts to a goroutine.
	NoWait bool
	// Relayed reports that the caller relays only the verdict (the SPOE
	// agent, forward-auth): it cannot set a login flow cookie along with
	// the redirect, so browsers are sent to /.gatehouse/login, which
	// starts the flow on gatehouse's own HTTP listener.
	Relayed bool
}

// Outcome is what Check decided.
type Outcome struct {
	// Allow reports that the request may go on to the upstream.
	Allow bool
	// Status is the response to send when Allow is false: 302 (sign in),
	// 401, 403 or 503.
	Status int
	// Location is the redirect for a 302.
	Location string
	// WWWAuthenticate is the challenge for a 401.
	WWWAuthenticate string
	// SetCookies must be sent with the response, allowed or not: a
	// refreshed or touched session, a deleted one, a login flow.
	SetCookies []*http.Cookie
	// Principal is the authenticated user, nil for anonymous requests.
	Principal *Principal
	// Headers are the identity headers to set upstream (when Allow).
	Headers []Header
	// Rule and Reason explain the decision.
	Rule, Reason string
	// Wait reports that Request.NoWait stopped Check before it decided:
	// call it again without NoWait. Nothing else in the Outcome is set.
	Wait bool
}

// Header is one identity header for the upstream.
type Header struct{ Name, Value string }

// Principal is an authenticated user.
type Principal struct {
	// Method is MethodSession or MethodBearer.
	Method string
	// Provider is the provider's configured name (sessions only).
	Provider              string
	Issuer, Subject       string
	Email, Name, Username string
	EmailVerified         bool
	Groups                []string
	Claims                map[string]any
	SessionRef            string    // audit reference of the session or token
	CreatedAt, ExpiresAt  time.Time // the session's (or token's) times
	session               *session.Session
	accessToken           string // for PassAccessToken routes
}

// Check authenticates req, applies rt's policy and returns the outcome. It
// is the one decision path for every way a request reaches gatehouse.
func (rt *Route) Check(ctx context.Context, req *Request) *Outcome {
	g := rt.g
	now := g.opts.Now()
	out := &Outcome{}
	p, failReason, tokenFailed := g.authenticate(ctx, req, now, out)
	if out.Wait {
		return &Outcome{Wait: true}
	}
	if p != nil && p.Method == MethodSession && !slices.Contains(rt.providers, p.Provider) {
		p, failReason = nil, ReasonProviderNotAllowed
	}
	in := policy.Input{Method: req.Method, Host: req.Host, Path: req.Path, SourceIP: req.Source}
	if p != nil {
		in.Identity = &policy.Identity{
			Issuer: p.Issuer, Subject: p.Subject, Email: p.Email, EmailVerified: p.EmailVerified,
			Groups: p.Groups, Claims: p.Claims, AuthMethod: p.Method,
		}
	}
	d := rt.opts.Policy.Decide(in)
	out.Principal, out.Rule, out.Reason = p, d.Rule, d.Reason
	switch {
	case d.Allow:
		out.Allow = true
		if p != nil {
			out.Headers = rt.identityHeaders(p, req.Host)
			if rt.opts.PassAccessToken && p.accessToken != "" {
				out.Headers = append(out.Headers, Header{"Authorization", "Bearer " + p.accessToken})
			}
		}
	case d.NeedLogin:
		if failReason != "" {
			out.Reason = failReason
		}
		if tokenFailed || req.API || rt.opts.API || req.Authorization != "" {
			out.Status = http.StatusUnauthorized
			out.WWWAuthenticate = `Bearer realm="gatehouse"`
			if tokenFailed {
				out.WWWAuthenticate += `, error="invalid_token"`
			}
			return out
		}
		rt.startLogin(ctx, req, now, out)
	default:
		out.Status = http.StatusForbidden
	}
	return out
}

// authenticate finds the principal: a bearer token when Authorization
// carries one, otherwise the session cookie. failReason says why a
// credential that was presented did not count; tokenFailed marks a bearer
// token that was refused.
func (g *Gate) authenticate(ctx context.Context, req *Request, now time.Time, out *Outcome) (p *Principal, failReason string, tokenFailed bool) {
	// A bearer token is a credential only when bearer issuers are
	// configured; otherwise it belongs to the app (and is removed unless
	// the route passes Authorization) and the session cookie decides.
	if req.Authorization != "" && g.opts.Bearer != nil {
		raw, ok := bearerToken(req.Authorization)
		if ok && req.NoWait {
			// Verifying may fetch the issuer's keys.
			out.Wait = true
			return nil, "", false
		}
		if ok {
			c, err := g.opts.Bearer.Verify(ctx, raw)
			if err != nil {
				return nil, token.Reason(err), true
			}
			p := bearerPrincipal(c)
			p.accessToken = raw
			return p, "", false
		}
	}
	value := cookieValue(req.Cookie, g.cookie)
	if value == "" {
		return nil, "", false
	}
	if req.NoWait && !g.localStore {
		out.Wait = true
		return nil, "", false
	}
	s, reason := g.loadSession(ctx, value, now, out, req.NoWait)
	if s == nil {
		return nil, reason, false
	}
	return sessionPrincipal(s), "", false
}

func bearerToken(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

func bearerPrincipal(c *token.Claims) *Principal {
	p := &Principal{
		Method:    MethodBearer,
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Email:     c.Email,
		Groups:    c.Groups,
		Claims:    c.Raw,
		CreatedAt: c.IssuedAt,
		ExpiresAt: c.Expiry,
	}
	p.EmailVerified, _ = c.Raw["email_verified"].(bool)
	p.Username, _ = c.Raw["preferred_username"].(string)
	p.Name, _ = c.Raw["name"].(string)
	p.SessionRef = c.Ref
	return p
}

// Keys of Session.Extra.
const (
	extraUsername      = "u"
	extraEmailVerified = "ev"
	extraClaimPrefix   = "c:"
	extraAccessToken   = "at" // only with Options.KeepAccessToken
)

func sessionPrincipal(s *session.Session) *Principal {
	p := &Principal{
		Method:        MethodSession,
		Provider:      s.Provider,
		Issuer:        s.Issuer,
		Subject:       s.Subject,
		Email:         s.Email,
		Name:          s.Name,
		Username:      s.Extra[extraUsername],
		EmailVerified: s.Extra[extraEmailVerified] == "1",
		Groups:        s.Groups,
		SessionRef:    s.ID.Ref(),
		CreatedAt:     s.CreatedAt,
		ExpiresAt:     s.AbsoluteExpiry,
		session:       s,
		accessToken:   s.Extra[extraAccessToken],
	}
	for k, v := range s.Extra {
		name, ok := strings.CutPrefix(k, extraClaimPrefix)
		if !ok {
			continue
		}
		var val any
		if json.Unmarshal([]byte(v), &val) != nil {
			continue
		}
		if p.Claims == nil {
			p.Claims = map[string]any{}
		}
		p.Claims[name] = val
	}
	return p
}

// cookieValue finds the cookie name in a Cookie header without parsing
// every cookie. The first occurrence wins, as net/http's would.
func cookieValue(header, name string) string {
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ";")
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if ok && k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// loadSession opens the session cookie, refreshing the provider's tokens
// when they are near expiry and re-sealing the cookie when the idle timer
// needs it. It returns nil and a reason when there is no usable session;
// a bad cookie is deleted.
func (g *Gate) loadSession(ctx context.Context, value string, now time.Time, out *Outcome, noWait bool) (*session.Session, string) {
	if g.replaced.active() {
		if r, ok := g.replaced.get(sha256.Sum256([]byte(value)), now); ok {
			// The browser sent the cookie a refresh has just replaced (a
			// request already in flight): use the refreshed session and
			// send its cookie again.
			out.SetCookies = append(out.SetCookies, g.sessionCookie(r.value))
			return r.session, ""
		}
	}
	s, err := g.opts.Store.Load(ctx, value, now)
	if err != nil {
		out.SetCookies = append(out.SetCookies, session.DeleteCookie(g.opts.CookieName, g.secure))
		if len(g.appRoutes) > 0 && (errors.Is(err, session.ErrRevoked) || errors.Is(err, session.ErrExpired) || errors.Is(err, session.ErrIdle)) {
			g.endDeadAppSessions(value)
		}
		return nil, sessionReason(err)
	}
	if s.RefreshToken != "" && !s.TokenExpiry.IsZero() && !now.Before(s.TokenExpiry.Add(-g.opts.RefreshBefore)) {
		if noWait {
			out.Wait = true
			return nil, ""
		}
		r := g.refresh(ctx, s, sha256.Sum256([]byte(value)), now)
		switch {
		case r.err == nil:
			out.SetCookies = append(out.SetCookies, g.sessionCookie(r.value))
			return r.session, ""
		case errors.Is(r.err, oidc.ErrRefreshUnavailable) && now.Before(s.TokenExpiry):
			// The provider is unreachable but the tokens are still valid:
			// keep going, and try again on a later request.
		default:
			out.SetCookies = append(out.SetCookies, session.DeleteCookie(g.opts.CookieName, g.secure))
			return nil, ReasonRefreshFailed
		}
	}
	if v, err := g.opts.Store.Touch(ctx, s, now); err == nil && v != "" {
		out.SetCookies = append(out.SetCookies, g.sessionCookie(v))
	}
	return s, ""
}

func sessionReason(err error) string {
	switch {
	case errors.Is(err, session.ErrExpired):
		return ReasonExpired
	case errors.Is(err, session.ErrIdle):
		return ReasonIdle
	case errors.Is(err, session.ErrRevoked):
		return ReasonRevoked
	}
	return ReasonBadSession
}

func (g *Gate) sessionCookie(value string) *http.Cookie {
	return session.SessionCookie(g.opts.CookieName, value, g.secure, g.opts.AbsoluteLifetime)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
