package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/oidc"
	"github.com/gatehouse-proxy/gatehouse/internal/session"
)

// maxBackchannelBody bounds a back-channel logout request.
const maxBackchannelBody = 64 << 10

// ServeInternal serves gatehouse's endpoints. path is the canonical path
// and host the canonical host. It reports false for a path that is not
// one of them, which the caller answers with 404.
func (g *Gate) ServeInternal(w http.ResponseWriter, r *http.Request, host, path string) bool {
	rec := recordOf(r.Context())
	rec.Route = "gatehouse"
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	switch {
	case path == PathJWKS:
		if g.opts.Signer == nil {
			return false
		}
		rec.Decision, rec.Reason = audit.DecisionAllow, "jwks"
		h.Del("Cache-Control") // ServeJWKS sets its own
		g.opts.Signer.ServeJWKS(w, r)
	case path == PathIDP || strings.HasPrefix(path, PathIDP+"/"):
		if g.opts.IDP == nil {
			return false
		}
		rec.Decision, rec.Reason = audit.DecisionAllow, "builtin-idp"
		g.opts.IDP.ServeHTTP(w, r)
	case path == PathLogin:
		if !g.allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return true
		}
		g.serveLogin(w, r, host)
	case path == PathCallback:
		if !g.allowMethods(w, r, http.MethodGet) {
			return true
		}
		g.serveCallback(w, r, host)
	case path == PathLogout:
		g.serveLogout(w, r, host)
	case path == PathLoggedOut:
		rec.Decision, rec.Reason = audit.DecisionAllow, ReasonLogout
		g.writePage(w, r, http.StatusOK, "loggedout", nil)
	case path == PathBackchannel:
		if !g.allowMethods(w, r, http.MethodPost) {
			return true
		}
		g.serveBackchannel(w, r)
	case path == PathMetabaseSSO:
		if !g.allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return true
		}
		g.serveAppSSO(w, r, host)
	case path == PathMe:
		if !g.allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return true
		}
		g.serveMe(w, r, host)
	default:
		return false
	}
	return true
}

func (g *Gate) allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	g.writeError(w, r, http.StatusMethodNotAllowed, "This method is not allowed here.", "method-refused")
	return false
}

// serveLogout ends the session. GET shows a page with a button; POST,
// protected against cross-site requests (Sec-Fetch-Site / Origin), revokes
// the session, deletes the cookie and continues to the provider's
// end-session endpoint when it has one (RP-initiated logout).
func (g *Gate) serveLogout(w http.ResponseWriter, r *http.Request, host string) {
	rec := recordOf(r.Context())
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		rec.Decision, rec.Reason = audit.DecisionAllow, "logout-page"
		g.writePage(w, r, http.StatusOK, "logout", nil)
		return
	case http.MethodPost:
	default:
		g.allowMethods(w, r, http.MethodGet, http.MethodPost)
		return
	}
	if err := g.cop.Check(r); err != nil {
		g.writeError(w, r, http.StatusForbidden, "Sign-out must be started from this site.", ReasonCrossSite)
		return
	}
	now := g.opts.Now()
	http.SetCookie(w, session.DeleteCookie(g.opts.CookieName, g.secure))
	next := g.originOf(host) + PathLoggedOut
	if v := cookieValue(r.Header.Get("Cookie"), g.cookie); v != "" {
		if s, err := g.opts.Store.Load(r.Context(), v, now); err == nil {
			rec.AuthMethod, rec.Issuer, rec.Subject, rec.Email = MethodSession, s.Issuer, s.Subject, s.Email
			if err := g.opts.Store.Revoke(r.Context(), s, now); err != nil {
				g.opts.Log.Error("revoking a session at logout failed", "session", s.ID.Ref(), "err", err)
				g.writeError(w, r, http.StatusServiceUnavailable, "Sign-out could not be completed. Try again.", "revoke-failed")
				return
			}
			g.opts.Log.Info("signed out", "session", s.ID.Ref(), "provider", s.Provider)
			g.endAppSessions(s)
			if p := g.providers[s.Provider]; p != nil {
				if u := p.EndSessionURL(r.Context(), s.IDTokenHint, next, ""); u != "" {
					next = u
				}
			}
		}
	}
	rec.Decision, rec.Reason = audit.DecisionRedirect, ReasonLogout
	// next is the provider's configured end-session endpoint or this
	// origin's signed-out page: never a client-supplied URL.
	http.Redirect(w, r, next, http.StatusSeeOther) //nolint:gosec // G710: see above
}

// serveBackchannel handles OpenID Connect Back-Channel Logout: a provider
// POSTs a logout token; gatehouse verifies it and revokes the sessions of
// its sid, or of its sub when it names no sid. It answers fast (senders
// time out after a few seconds): 200 on success, 400 otherwise, never
// cached.
func (g *Gate) serveBackchannel(w http.ResponseWriter, r *http.Request) {
	rec := recordOf(r.Context())
	rec.Reason = ReasonBackchannel
	bad := func(reason string) {
		rec.Decision = audit.DecisionDeny
		rec.Reason = reason
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_request"}` + "\n"))
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBackchannelBody)
	if err := r.ParseForm(); err != nil {
		bad("backchannel-bad-request")
		return
	}
	raw := r.PostForm.Get("logout_token")
	iss := unverifiedIssuer(raw)
	if raw == "" || iss == "" {
		bad("backchannel-bad-token")
		return
	}
	var req *oidc.LogoutRequest
	var provider string
	lastErr := oidc.ErrLogoutToken
	for _, name := range g.names {
		p := g.providers[name]
		if p.Issuer() != iss {
			continue
		}
		var err error
		if req, err = p.VerifyLogoutToken(r.Context(), raw); err == nil {
			provider = name
			break
		}
		lastErr = err
	}
	if req == nil {
		g.opts.Log.Warn("back-channel logout refused", "err", lastErr)
		bad("backchannel-bad-token")
		return
	}
	now := g.opts.Now()
	var err error
	if req.SID != "" {
		err = g.opts.Store.RevokeBySID(r.Context(), req.Issuer, req.SID, now)
	} else {
		err = g.opts.Store.RevokeBySubject(r.Context(), req.Issuer, req.Subject, now)
	}
	if err != nil {
		g.opts.Log.Error("back-channel logout: revocation failed", "provider", provider, "err", err)
		rec.Decision = audit.DecisionError
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	rec.Decision = audit.DecisionAllow
	rec.Issuer, rec.Subject = req.Issuer, req.Subject
	g.opts.Log.Info("back-channel logout", "provider", provider, "by_sid", req.SID != "")
	w.WriteHeader(http.StatusOK)
}

// unverifiedIssuer reads iss from a JWT's payload without verifying it,
// only to choose which provider verifies the token.
func unverifiedIssuer(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(raw) > 16<<10 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Iss
}

// serveMe shows the signed-in identity: never a token.
func (g *Gate) serveMe(w http.ResponseWriter, r *http.Request, host string) {
	rec := recordOf(r.Context())
	out := &Outcome{}
	req := &Request{Cookie: r.Header.Get("Cookie"), Authorization: r.Header.Get("Authorization")}
	p, reason, _ := g.authenticate(r.Context(), req, g.opts.Now(), out)
	for _, c := range out.SetCookies {
		http.SetCookie(w, c)
	}
	if p == nil {
		if reason == "" {
			reason = "no-session"
		}
		g.writeError(w, r, http.StatusUnauthorized, "You are not signed in.", reason)
		return
	}
	rec.Decision, rec.Reason = audit.DecisionAllow, "me"
	rec.AuthMethod, rec.Issuer, rec.Subject, rec.Email, rec.Groups = p.Method, p.Issuer, p.Subject, p.Email, p.Groups
	groups := p.Groups
	if groups == nil {
		groups = []string{}
	}
	me := map[string]any{
		"auth_method": p.Method,
		"issuer":      p.Issuer,
		"subject":     p.Subject,
		"email":       p.Email,
		"name":        p.Name,
		"username":    p.Username,
		"groups":      groups,
	}
	if p.Provider != "" {
		me["provider"] = p.Provider
	}
	if p.SessionRef != "" {
		me["session"] = p.SessionRef
	}
	if !p.CreatedAt.IsZero() {
		me["signed_in_at"] = p.CreatedAt.UTC()
	}
	if !p.ExpiresAt.IsZero() {
		me["expires_at"] = p.ExpiresAt.UTC()
	}
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(me)
		return
	}
	g.writePage(w, r, http.StatusOK, "me", map[string]any{"Me": me, "P": p})
}

// Admit is the proxy's guard: it checks r on rt and either prepares it for
// the upstream (identity headers set, gatehouse's cookies and, unless the
// route passes it, Authorization removed) and returns true, or answers w
// (sign in, 401, 403) and returns false. host and path are canonical.
func (rt *Route) Admit(w http.ResponseWriter, r *http.Request, host, path string) *http.Request {
	rec := recordOf(r.Context())
	if rt.hasAppCredential(r.Header) {
		if rt.opts.AllowAppCredentials {
			// The app authenticates this one (a script with Metabase's
			// API key): no identity, gatehouse's cookies still removed.
			rec.Decision, rec.Reason = audit.DecisionAllow, ReasonAppCredential
			if c := strings.Join(r.Header["Cookie"], "; "); c != "" {
				setCookieHeader(r.Header, rt.g.StripCookies(c))
			}
			if !rt.opts.PassAuthorization {
				delete(r.Header, "Authorization")
			}
			return r
		}
		for _, h := range rt.opts.AppCredentials {
			delete(r.Header, h)
		}
	}
	req := &Request{
		Method:        r.Method,
		Host:          host,
		Path:          path,
		RawQuery:      r.URL.RawQuery,
		Source:        rec.ClientIP,
		Cookie:        strings.Join(r.Header["Cookie"], "; "),
		Authorization: r.Header.Get("Authorization"),
		API:           IsAPIRequest(r) || r.Header.Get("Upgrade") != "",
	}
	out := rt.Check(r.Context(), req)
	for _, c := range out.SetCookies {
		http.SetCookie(w, c)
	}
	if p := out.Principal; p != nil {
		rec.AuthMethod, rec.Issuer, rec.Subject, rec.Email, rec.Groups = p.Method, p.Issuer, p.Subject, p.Email, p.Groups
	}
	rec.Rule, rec.Reason = out.Rule, out.Reason
	if out.Allow {
		rec.Decision = audit.DecisionAllow
		// One backing array for every header's one-value slice.
		vals := make([]string, len(out.Headers))
		for i, h := range out.Headers {
			vals[i] = h.Value
			r.Header[h.Name] = vals[i : i+1 : i+1]
		}
		if req.Cookie != "" {
			if c := rt.g.StripCookies(req.Cookie); c != req.Cookie {
				setCookieHeader(r.Header, c)
			}
		}
		sentToken := rt.opts.PassAccessToken && out.Principal != nil && out.Principal.accessToken != ""
		if !rt.opts.PassAuthorization && !sentToken {
			delete(r.Header, "Authorization")
		}
		if r.Header.Get("Upgrade") != "" && out.Principal != nil {
			r = r.WithContext(rt.g.watch(r.Context(), out.Principal, req.Cookie))
		}
		if rt.opts.AppSession != nil {
			// The browser never holds the app's session: any it sends
			// is dropped, and a signed-in user's bound one is sent.
			dropCookie(r.Header, rt.opts.AppSession.CookieName())
			if p := out.Principal; p != nil && p.session != nil {
				return rt.admitApp(w, r, p, req.Cookie, path)
			}
		}
		return r
	}
	rt.g.writeOutcome(w, r, out)
	return nil
}

// serveAppSSO answers an app that sends the browser to its identity
// provider to sign in (Metabase's jwt-identity-provider-uri, with the page
// to return to as return_to): gatehouse signs users in to such an app
// itself on their requests, so the browser is sent back to that page, on
// this origin only; the route's policy starts a gatehouse sign-in there if
// needed.
func (g *Gate) serveAppSSO(w http.ResponseWriter, r *http.Request, host string) {
	rec := recordOf(r.Context())
	rec.Decision, rec.Reason = audit.DecisionRedirect, ReasonAppLogin
	http.Redirect(w, r, g.appReturnTo(host, r.URL.Query().Get("return_to")), http.StatusFound) //nolint:gosec // G710: oidc.ReturnTo keeps it on this origin
}

// dropCookie removes the cookie called name from h's Cookie header.
func dropCookie(h http.Header, name string) {
	c := strings.Join(h["Cookie"], "; ")
	if strings.Contains(c, name) {
		setCookieHeader(h, filterCookies(c, func(n string) bool { return n == name }))
	}
}

// hasAppCredential reports whether h carries one of the route's
// AppCredentials.
func (rt *Route) hasAppCredential(h http.Header) bool {
	for _, name := range rt.opts.AppCredentials {
		if _, ok := h[name]; ok {
			return true
		}
	}
	return false
}

// writeOutcome answers a request Check did not allow.
func (g *Gate) writeOutcome(w http.ResponseWriter, r *http.Request, out *Outcome) {
	rec := recordOf(r.Context())
	switch out.Status {
	case http.StatusFound:
		rec.Decision = audit.DecisionRedirect
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, out.Location, http.StatusFound)
	case http.StatusUnauthorized:
		rec.Decision = audit.DecisionDeny
		w.Header().Set("WWW-Authenticate", out.WWWAuthenticate)
		g.writeError(w, r, http.StatusUnauthorized, "Sign-in is required.", out.Reason)
	case http.StatusForbidden:
		rec.Decision = audit.DecisionDeny
		g.writeDenied(w, r, out)
	default:
		rec.Decision = audit.DecisionError
		g.writeError(w, r, out.Status, "The sign-in service is unavailable. Try again shortly.", out.Reason)
	}
}

// IsAPIRequest reports whether r comes from a program rather than a page
// navigation: it asks for JSON, is a fetch()/XHR (Sec-Fetch-Mode other
// than navigate, X-Requested-With), or is not a GET or HEAD (a redirect
// would lose its body). Such requests get 401, never a sign-in redirect.
func IsAPIRequest(r *http.Request) bool {
	h := r.Header
	return IsAPI(r.Method, h.Get("Accept"), h.Get("Sec-Fetch-Mode"), h.Get("X-Requested-With"))
}

// IsAPI is IsAPIRequest on the method and the values of the Accept,
// Sec-Fetch-Mode and X-Requested-With headers, for front ends that pass
// them one by one (SPOE).
func IsAPI(method, accept, fetchMode, requestedWith string) bool {
	if method != http.MethodGet && method != http.MethodHead {
		return true
	}
	if fetchMode != "" && fetchMode != "navigate" {
		return true
	}
	if requestedWith != "" {
		return true
	}
	return acceptsJSON(accept)
}

// watch returns a context that ends when p's credential does: at the
// session's absolute expiry (or the bearer token's), and within
// WatchInterval of the session being revoked (logout, back-channel logout)
// or timing out. An upgraded connection (WebSocket) runs under it, so it
// is closed when the user's access ends; peers leave such tunnels open.
func (g *Gate) watch(parent context.Context, p *Principal, cookies string) context.Context {
	ctx, cancel := context.WithCancel(parent)
	value := cookieValue(cookies, g.cookie)
	go func() {
		defer cancel()
		t := time.NewTicker(g.opts.WatchInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now := g.opts.Now()
			if !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt) {
				return
			}
			if p.Method == MethodSession && value != "" {
				if _, err := g.opts.Store.Load(ctx, value, now); err != nil && !errors.Is(err, session.ErrIdle) {
					// Revoked or expired. (An idle timeout does not end a
					// connection that is in use: the tunnel is activity
					// gatehouse does not see.)
					return
				}
			}
		}
	}()
	return ctx
}
