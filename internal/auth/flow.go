package auth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/oidc"
	"github.com/gatehouse-proxy/gatehouse/internal/session"
)

// Paths of gatehouse's endpoints.
const (
	PathLogin       = "/.gatehouse/login"
	PathCallback    = "/.gatehouse/callback"
	PathLogout      = "/.gatehouse/logout"
	PathLoggedOut   = "/.gatehouse/logged-out"
	PathBackchannel = "/.gatehouse/backchannel-logout"
	PathMe          = "/.gatehouse/me"
	PathIDP         = "/.gatehouse/idp"
	PathJWKS        = "/.well-known/gatehouse/jwks.json"
	// PathMetabaseSSO is the endpoint to give Metabase as its JWT
	// identity provider URI, for sign-ins Metabase starts.
	PathMetabaseSSO = "/.gatehouse/metabase/sso"
)

// flowCookieBase starts the name of every login flow cookie; the rest is
// the first stateTagLen characters of the flow's state, so parallel logins
// (two tabs) each keep their own cookie (security-notes §4.2).
const (
	flowCookieBase = "gh_flow_"
	stateTagLen    = 12
	// maxFlowCookies bounds parallel logins per browser; beyond it the
	// older flows are dropped.
	maxFlowCookies = 4
)

// Reasons for failed callbacks.
const (
	ReasonFlowMissing   = "flow-missing"   // no flow cookie for this state: another browser, or replayed
	ReasonFlowReplayed  = "flow-replayed"  // the state was redeemed already
	ReasonFlowExpired   = "flow-expired"   // the login took longer than 10 minutes
	ReasonProviderError = "provider-error" // the provider answered with an error (the user cancelled, ...)
	ReasonIssuerMixUp   = "issuer-mismatch"
	ReasonTokenInvalid  = "id-token-invalid"
)

func (g *Gate) callbackURL(host string) string {
	return g.opts.PublicURL.Scheme + "://" + host + PathCallback
}

func (g *Gate) originOf(host string) string {
	return g.opts.PublicURL.Scheme + "://" + host
}

// startLogin answers a browser that must sign in: straight to the provider
// when the route has one, to the chooser when it has several.
func (rt *Route) startLogin(ctx context.Context, req *Request, now time.Time, out *Outcome) {
	g := rt.g
	origin := g.originOf(req.Host)
	target := req.Path
	if req.RawQuery != "" {
		target += "?" + req.RawQuery
	}
	returnTo, err := oidc.ReturnTo(target, origin, nil)
	if err != nil {
		returnTo = origin + "/"
	}
	switch {
	case len(rt.providers) == 0:
		out.Status = http.StatusUnauthorized
		out.WWWAuthenticate = `Bearer realm="gatehouse"`
	case len(rt.providers) == 1 && !req.Relayed:
		g.beginFlow(ctx, rt.providers[0], returnTo, req.Host, req.Cookie, now, out)
	default:
		out.Status = http.StatusFound
		out.Location = origin + PathLogin + "?rd=" + url.QueryEscape(strings.TrimPrefix(returnTo, origin))
	}
}

// beginFlow creates a login flow for provider, sets its cookie and
// redirects to the provider.
func (g *Gate) beginFlow(ctx context.Context, provider, returnTo, host, cookies string, now time.Time, out *Outcome) {
	p := g.providers[provider]
	f := oidc.NewFlow(provider, returnTo, g.callbackURL(host), now)
	u, err := p.AuthCodeURL(ctx, f, f.RedirectURL)
	if err != nil {
		out.Status, out.Reason = http.StatusServiceUnavailable, ReasonProviderDown
		return
	}
	b, err := f.MarshalBinary()
	if err != nil {
		out.Status, out.Reason = http.StatusInternalServerError, ReasonCallbackFailed
		return
	}
	name := flowCookieBase + f.State[:stateTagLen]
	sealed, err := g.opts.Codec.Seal(name, b)
	if err != nil {
		out.Status, out.Reason = http.StatusInternalServerError, ReasonCallbackFailed
		return
	}
	// Too many unfinished logins (abandoned tabs): drop them all rather
	// than grow the Cookie header without bound.
	if strings.Count(cookies, flowCookieBase) >= maxFlowCookies {
		for rest := cookies; rest != ""; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			n, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if base := strings.TrimPrefix(n, "__Host-"); strings.HasPrefix(base, flowCookieBase) {
				out.SetCookies = append(out.SetCookies, session.DeleteCookie(base, g.secure))
			}
		}
	}
	out.SetCookies = append(out.SetCookies, session.SessionCookie(name, sealed, g.secure, oidc.MaxFlowAge))
	out.Status = http.StatusFound
	out.Location = u
	// out.Reason keeps why sign-in is needed (no-session, expired, ...).
}

// serveLogin is the sign-in page: it starts a flow with the chosen (or
// only) provider of the route the user is going to, or lists them.
func (g *Gate) serveLogin(w http.ResponseWriter, r *http.Request, host string) {
	rec := recordOf(r.Context())
	origin := g.originOf(host)
	q := r.URL.Query()
	returnTo, err := oidc.ReturnTo(q.Get("rd"), origin, nil)
	if q.Get("rd") == "" || err != nil {
		returnTo = origin + "/"
	}
	names := g.names
	if g.routeFor != nil {
		if u, err := url.Parse(returnTo); err == nil {
			if rt := g.routeFor(host, u.Path); rt != nil {
				names = rt.providers
			}
		}
	}
	if len(names) == 0 {
		g.writeError(w, r, http.StatusNotFound, "No sign-in is configured here.", "no-provider")
		return
	}
	choice := q.Get("provider")
	if choice == "" && len(names) == 1 {
		choice = names[0]
	}
	if choice != "" {
		if !slices.Contains(names, choice) {
			g.writeError(w, r, http.StatusBadRequest, "That sign-in option is not available here.", ReasonProviderNotAllowed)
			return
		}
		out := &Outcome{}
		g.beginFlow(r.Context(), choice, returnTo, host, r.Header.Get("Cookie"), g.opts.Now(), out)
		for _, c := range out.SetCookies {
			http.SetCookie(w, c)
		}
		if out.Status != http.StatusFound {
			g.writeError(w, r, out.Status, "The sign-in service is unavailable. Try again shortly.", out.Reason)
			return
		}
		rec.Decision, rec.Reason = audit.DecisionRedirect, ReasonLoginStarted
		http.Redirect(w, r, out.Location, http.StatusFound)
		return
	}
	type option struct{ Name, URL string }
	var opts []option
	for _, n := range names {
		v := url.Values{"provider": {n}, "rd": {strings.TrimPrefix(returnTo, origin)}}
		display := g.opts.DisplayNames[n]
		if display == "" {
			display = n
		}
		opts = append(opts, option{display, PathLogin + "?" + v.Encode()})
	}
	rec.Decision, rec.Reason = audit.DecisionAllow, "login-chooser"
	g.writePage(w, r, http.StatusOK, "chooser", map[string]any{"Options": opts})
}

// serveCallback finishes a login: the flow cookie must hold this state
// (the same browser), unexpired and not redeemed before; the provider's
// answer must come from the provider the flow started with; the code is
// exchanged with the PKCE verifier and the ID token checked against the
// nonce. Then a new session starts.
func (g *Gate) serveCallback(w http.ResponseWriter, r *http.Request, host string) {
	rec := recordOf(r.Context())
	now := g.opts.Now()
	q := r.URL.Query()
	state := q.Get("state")
	fail := func(status int, msg, reason string) {
		g.writeError(w, r, status, msg, reason)
	}
	if len(state) < 32 || len(state) > 128 || !base64URL(state) {
		fail(http.StatusBadRequest, "This sign-in link is not valid. Start again.", ReasonFlowMissing)
		return
	}
	name := flowCookieBase + state[:stateTagLen]
	// The flow cookie is single use: deleted whatever happens next.
	http.SetCookie(w, session.DeleteCookie(name, g.secure))
	c, err := r.Cookie(session.CookieName(name, g.secure))
	if err != nil {
		fail(http.StatusBadRequest, "This sign-in was started in another browser or has already been used. Start again.", ReasonFlowMissing)
		return
	}
	var f oidc.Flow
	b, err := g.opts.Codec.Open(name, c.Value)
	if err != nil || f.UnmarshalBinary(b) != nil || !constantEqual(f.State, state) {
		fail(http.StatusBadRequest, "This sign-in was started in another browser or has already been used. Start again.", ReasonFlowMissing)
		return
	}
	if f.Expired(now) {
		fail(http.StatusBadRequest, "This sign-in took too long. Start again.", ReasonFlowExpired)
		return
	}
	if !g.usedState.First(f.State, now) {
		fail(http.StatusBadRequest, "This sign-in has already been used. Start again.", ReasonFlowReplayed)
		return
	}
	p := g.providers[f.Provider]
	if p == nil {
		fail(http.StatusBadRequest, "This sign-in option is no longer available. Start again.", ReasonProviderNotAllowed)
		return
	}
	if e := q.Get("error"); e != "" {
		g.opts.Log.Info("provider refused the sign-in", "provider", f.Provider, "error", truncate(e, 64))
		fail(http.StatusForbidden, "The sign-in was cancelled or refused by the identity provider.", ReasonProviderError)
		return
	}
	if err := p.CheckIssuerParam(r.Context(), q.Get("iss"), q.Has("iss")); err != nil {
		fail(http.StatusBadRequest, "The sign-in answer came from an unexpected provider. Start again.", ReasonIssuerMixUp)
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 2048 {
		fail(http.StatusBadRequest, "This sign-in link is not valid. Start again.", ReasonCallbackFailed)
		return
	}
	id, err := p.Exchange(r.Context(), code, &f, f.RedirectURL)
	if err != nil {
		g.opts.Log.Warn("sign-in failed", "provider", f.Provider, "err", err)
		switch {
		case errors.Is(err, oidc.ErrIDToken):
			fail(http.StatusBadGateway, "The identity provider's answer could not be verified.", ReasonTokenInvalid)
		case errors.Is(err, oidc.ErrDiscovery):
			fail(http.StatusServiceUnavailable, "The sign-in service is unavailable. Try again shortly.", ReasonProviderDown)
		default:
			fail(http.StatusBadGateway, "The sign-in could not be completed. Start again.", ReasonCallbackFailed)
		}
		return
	}
	s := &session.Session{
		ID:           session.NewID(),
		Issuer:       id.Issuer,
		Subject:      id.Subject,
		Provider:     f.Provider,
		Email:        id.Email,
		Name:         id.Name,
		Groups:       id.Groups,
		SID:          id.SID,
		CreatedAt:    now,
		TokenExpiry:  id.Expiry,
		RefreshToken: id.RefreshToken,
		IDTokenHint:  id.IDToken,
		Extra:        g.extra(id),
	}
	value, err := g.save(r.Context(), s, now)
	if err != nil {
		g.opts.Log.Error("saving a new session failed", "provider", f.Provider, "err", err)
		fail(http.StatusInternalServerError, "The session could not be created.", ReasonCallbackFailed)
		return
	}
	// A session the browser held before (another user, or an attacker's
	// planted one) ends here: a fresh ID at every login.
	if old := cookieValue(r.Header.Get("Cookie"), g.cookie); old != "" {
		if os, err := g.opts.Store.Load(r.Context(), old, now); err == nil {
			_ = g.opts.Store.Revoke(r.Context(), os, now)
		}
	}
	http.SetCookie(w, g.sessionCookie(value))
	rec.Decision, rec.Reason = audit.DecisionRedirect, ReasonCallback
	rec.AuthMethod, rec.Issuer, rec.Subject, rec.Email, rec.Groups = MethodSession, s.Issuer, s.Subject, s.Email, s.Groups
	g.opts.Log.Info("signed in", "provider", f.Provider, "session", s.ID.Ref())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	// 303 (RFC 9700 §4.12): the browser follows with a GET.
	http.Redirect(w, r, f.ReturnTo, http.StatusSeeOther)
}

func base64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
