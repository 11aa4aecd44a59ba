package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"maps"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/oidc"
	"github.com/gatehouse-proxy/gatehouse/internal/session"
)

// AppSession signs users in to an app that keeps sessions of its own
// (Metabase), so that the app's session is bound to the gatehouse session:
// gatehouse obtains it server side, keeps its key sealed in the gatehouse
// session, and sends it to the app on every request in the app's session
// cookie. The browser never holds it: the cookie is removed from what the
// browser sends and from what the app answers.
type AppSession interface {
	// CookieName is the app's session cookie, such as metabase.SESSION.
	CookieName() string
	// SignIn obtains a new app session for p, whose request came from
	// client. It returns the session key and when the app ends it.
	SignIn(ctx context.Context, p *Principal, client netip.Addr) (key string, expires time.Time, err error)
	// SignOut ends an app session (gatehouse logout, a privilege change).
	SignOut(ctx context.Context, key string) error
	// Owner returns the email of the user an app session belongs to, to
	// decide whether a session the app issued itself may replace the
	// bound one.
	Owner(ctx context.Context, key string) (email string, err error)
}

// Reasons of app sessions.
const (
	// ReasonAppSignInFailed: gatehouse could not sign the user in to the
	// app (502).
	ReasonAppSignInFailed = "app-sign-in-failed"
	// ReasonAppLogin: the app sent the browser to its own login page;
	// gatehouse, which signs the user in itself, sent it back on.
	ReasonAppLogin = "app-login"
)

const (
	// extraAppPrefix starts the Session.Extra key of a route's app
	// session: "key expiresUnix createdUnix retry", retry 1 when it
	// replaced a session the app refused.
	extraAppPrefix = "as:"
	// appRenewBefore is how long before the app's own expiry a new app
	// session is obtained.
	appRenewBefore = 5 * time.Minute
	// appRetryWindow: an app session the app refused within this long
	// of being obtained is not replaced again (one retry, then an error
	// page), so an app that refuses every session is not hammered.
	appRetryWindow = time.Minute
	// appSignInTimeout bounds one sign-in at the app.
	appSignInTimeout = 15 * time.Second
	// maxRejected bounds the set of app session keys the app refused.
	maxRejected = 50_000
	// appDefaultLifetime is the lifetime of a captured app session whose
	// cookie names none (a browser-session cookie): Metabase's default
	// MAX_SESSION_AGE.
	appDefaultLifetime = 14 * 24 * time.Hour
)

// errAppRefusedAgain: the app refused a session obtained moments ago.
var errAppRefusedAgain = errors.New("the app refused a new session again")

type appBinding struct {
	key              string
	expires, created time.Time
	retry            bool // it replaced a session the app refused
}

func parseAppBinding(v string) (appBinding, bool) {
	key, rest, ok1 := strings.Cut(v, " ")
	exp, rest, ok2 := strings.Cut(rest, " ")
	created, retry, ok3 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !ok3 || key == "" || strings.Contains(retry, " ") {
		return appBinding{}, false
	}
	ei, err1 := strconv.ParseInt(exp, 10, 64)
	ci, err2 := strconv.ParseInt(created, 10, 64)
	if err1 != nil || err2 != nil {
		return appBinding{}, false
	}
	return appBinding{key, time.Unix(ei, 0), time.Unix(ci, 0), retry == "1"}, true
}

func (b appBinding) String() string {
	retry := "0"
	if b.retry {
		retry = "1"
	}
	return b.key + " " + strconv.FormatInt(b.expires.Unix(), 10) + " " + strconv.FormatInt(b.created.Unix(), 10) + " " + retry
}

// rejectedKeys remembers app session keys the app answered 401 to, by
// hash.
type rejectedKeys struct {
	n  atomic.Int64 // len(m), so that has costs nothing while it is empty (usually)
	mu sync.Mutex   // guards m
	m  map[[32]byte]struct{}
}

// add records key and reports whether it was new.
func (r *rejectedKeys) add(key string) bool {
	h := sha256.Sum256([]byte(key))
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[h]; ok {
		return false
	}
	if r.m == nil {
		r.m = map[[32]byte]struct{}{}
	}
	if len(r.m) >= maxRejected {
		clear(r.m) // they are only hints: a refused key is refused again
	}
	r.m[h] = struct{}{}
	r.n.Store(int64(len(r.m)))
	return true
}

func (r *rejectedKeys) has(key string) bool {
	if r.n.Load() == 0 {
		return false
	}
	h := sha256.Sum256([]byte(key))
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[h]
	return ok
}

// appContextKey carries the appRequest of a request sent upstream with a
// bound app session, for CheckResponse.
type appContextKey struct{}

// appRequest is what CheckResponse needs to know about the request.
type appRequest struct {
	key    string     // the bound app session key sent upstream
	p      *Principal // the user, with their session
	cookie string     // the gatehouse session cookie the request came with
}

// appCaptureTimeout bounds checking who a session the app issued belongs
// to.
const appCaptureTimeout = 5 * time.Second

// bindApp returns the app session key for p's session, obtaining one when
// the session has none, it is near its expiry or the app refused it. A new
// one is sealed into the session cookie, which is set on w; requests still
// in flight with the previous cookie get the same session (the replaced
// map, as after a refresh).
func (rt *Route) bindApp(ctx context.Context, w http.ResponseWriter, p *Principal, cookieHeader string, client netip.Addr) (string, error) {
	g := rt.g
	now := g.opts.Now()
	s := p.session
	name := rt.appExtra
	b, ok := parseAppBinding(s.Extra[name])
	refused := ok && g.appRejected.has(b.key)
	if ok && !refused && now.Before(b.expires.Add(-appRenewBefore)) {
		return b.key, nil
	}
	if refused && b.retry && now.Sub(b.created) < appRetryWindow {
		// One new session after a refusal; a second refusal in a row is
		// the app's answer (the user deactivated, SSO turned off).
		return "", errAppRefusedAgain
	}
	oldKey := sha256.Sum256([]byte(cookieValue(cookieHeader, g.cookie)))
	r := g.appFlights.do(s.ID.String()+"\x00"+name, func() *refreshResult {
		if res, ok := g.replaced.get(oldKey, now); ok && res.session != nil {
			if nb, ok := parseAppBinding(res.session.Extra[name]); ok && !g.appRejected.has(nb.key) {
				return res // another request of this browser has just bound it
			}
		}
		// Detached from the request: its values (the audit record) are
		// not the sign-in's, and a client going away must not waste a
		// sign-in other requests wait for.
		sctx, cancel := context.WithTimeout(context.Background(), appSignInTimeout)
		defer cancel()
		key, exp, err := rt.opts.AppSession.SignIn(sctx, p, client)
		if err != nil {
			return &refreshResult{err: err}
		}
		ns := withExtra(s, name, appBinding{key: key, expires: exp, created: now, retry: refused}.String())
		value, err := g.save(sctx, ns, now)
		if err != nil {
			go rt.signOutApp(key)
			return &refreshResult{err: err}
		}
		if ok {
			go rt.signOutApp(b.key) // the session it replaces
		}
		res := &refreshResult{session: ns, value: value}
		g.replaced.put(oldKey, res, now)
		return res
	})
	if r.err != nil {
		return "", r.err
	}
	http.SetCookie(w, g.sessionCookie(r.value))
	nb, _ := parseAppBinding(r.session.Extra[name])
	return nb.key, nil
}

// signOutApp ends an app session in the background.
func (rt *Route) signOutApp(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), appSignInTimeout)
	defer cancel()
	if err := rt.opts.AppSession.SignOut(ctx, key); err != nil {
		rt.g.opts.Log.Warn("ending an app session failed", "route", rt.opts.Name, "err", err)
	}
}

// endAppSessions ends the app sessions bound to s (logout, a privilege
// change, a dead session), in the background. Each app session is ended
// once, whatever number of requests bring the cookie it is bound to.
func (g *Gate) endAppSessions(s *session.Session) {
	for k, v := range s.Extra {
		route, ok := strings.CutPrefix(k, extraAppPrefix)
		if !ok {
			continue
		}
		rt := g.appRoutes[route]
		b, ok := parseAppBinding(v)
		if rt == nil || !ok || !g.appEnded.add(b.key) {
			continue
		}
		go rt.signOutApp(b.key)
	}
}

// endDeadAppSessions ends the app sessions bound to a session that has
// ended without gatehouse seeing its cookie (back-channel logout,
// expiry): when the cookie is next presented.
func (g *Gate) endDeadAppSessions(value string) {
	o, ok := g.opts.Store.(interface {
		Open(string) (*session.Session, error)
	})
	if !ok {
		return
	}
	if s, err := o.Open(value); err == nil {
		g.endAppSessions(s)
	}
}

// appReturnTo is where to send a browser the app sent to sign in (its
// login page, or gatehouse's endpoint for app-initiated sign-ins): raw if
// oidc.ReturnTo accepts it for this origin and it is not one of the app's
// sign-in pages (/auth/...) or gatehouse's, else the origin's root.
func (g *Gate) appReturnTo(host, raw string) string {
	origin := g.originOf(host)
	u, err := oidc.ReturnTo(raw, origin, nil)
	if err != nil {
		return origin + "/"
	}
	if p := strings.TrimPrefix(u, origin); strings.HasPrefix(p, "/auth/") || strings.HasPrefix(p, "/.gatehouse/") {
		return origin + "/"
	}
	return u
}

// withExtra returns a copy of s with Extra[k] = v; s is not modified
// (sessions are shared by the requests that opened them).
func withExtra(s *session.Session, k, v string) *session.Session {
	ns := *s
	ns.Extra = maps.Clone(s.Extra)
	if ns.Extra == nil {
		ns.Extra = map[string]string{}
	}
	ns.Extra[k] = v
	return &ns
}

// keepAppBindings copies the app bindings of old into ns's Extra.
func keepAppBindings(old map[string]string, ns *session.Session) {
	for k, v := range old {
		if strings.HasPrefix(k, extraAppPrefix) {
			if ns.Extra == nil {
				ns.Extra = map[string]string{}
			}
			ns.Extra[k] = v
		}
	}
}

// setAppCookie returns the Cookie header for the app: cookies (gatehouse's
// already removed) without any app session cookie the browser sent, plus
// the bound one.
func setAppCookie(cookies, name, key string) string {
	c := filterCookies(cookies, func(n string) bool { return n == name })
	if c != "" {
		c += "; "
	}
	return c + name + "=" + key
}

// CheckResponse runs on the app's response on a route with an app
// session. The app may not set its session cookie in the browser: it is
// removed. When the app issued a new session on a request that carried the
// bound one (its own login form, say), the new session replaces the bound
// one if, and only if, it belongs to the same user: gatehouse asks the app
// whose it is. A session of another account is dropped, so knowing
// someone's app password never switches the gatehouse user's identity in
// the app. A 401 to a request that carried the bound session marks that
// session as refused, so the next request obtains a new one.
func (rt *Route) CheckResponse(resp *http.Response) {
	if rt.opts.AppSession == nil {
		return
	}
	name := rt.opts.AppSession.CookieName()
	var issued *http.Cookie
	if vals := resp.Header["Set-Cookie"]; len(vals) > 0 {
		var kept []string // allocated at the first cookie removed
		for i, v := range vals {
			n, _, _ := strings.Cut(v, "=")
			if strings.TrimSpace(n) != name {
				if kept != nil {
					kept = append(kept, v)
				}
				continue
			}
			if kept == nil {
				kept = append(make([]string, 0, len(vals)-1), vals[:i]...)
			}
			if c, err := http.ParseSetCookie(v); err == nil && c.Value != "" && c.MaxAge >= 0 &&
				(c.Expires.IsZero() || c.Expires.After(rt.g.opts.Now())) {
				issued = c
			}
		}
		switch {
		case kept == nil: // nothing removed
		case len(kept) == 0:
			delete(resp.Header, "Set-Cookie")
		default:
			resp.Header["Set-Cookie"] = kept
		}
	}
	if resp.Request == nil {
		return
	}
	ar, ok := resp.Request.Context().Value(appContextKey{}).(*appRequest)
	if !ok {
		return
	}
	if resp.StatusCode == http.StatusUnauthorized {
		rt.g.appRejected.add(ar.key)
	}
	if issued != nil && issued.Value != ar.key {
		rt.captureApp(resp, ar, issued)
	}
}

// captureApp binds a session the app issued in resp, when it is the same
// user's, and adds the re-sealed gatehouse cookie to resp.
func (rt *Route) captureApp(resp *http.Response, ar *appRequest, c *http.Cookie) {
	g := rt.g
	// Detached from the request, whose values (its audit record) are not
	// this call's.
	ctx, cancel := context.WithTimeout(context.Background(), appCaptureTimeout)
	defer cancel()
	owner, err := rt.opts.AppSession.Owner(ctx, c.Value)
	if err != nil || ar.p.Email == "" || !strings.EqualFold(owner, ar.p.Email) {
		g.opts.Log.Warn("the app issued a session that is not the signed-in user's; dropped",
			"route", rt.opts.Name, "session", ar.p.SessionRef, "err", err)
		go rt.signOutApp(c.Value)
		return
	}
	now := g.opts.Now()
	exp := c.Expires
	if exp.IsZero() && c.MaxAge > 0 {
		exp = now.Add(time.Duration(c.MaxAge) * time.Second)
	}
	if exp.IsZero() {
		exp = now.Add(appDefaultLifetime)
	}
	ns := withExtra(ar.p.session, rt.appExtra, appBinding{key: c.Value, expires: exp, created: now}.String())
	value, err := g.save(ctx, ns, now)
	if err != nil {
		g.opts.Log.Error("binding the session the app issued failed", "route", rt.opts.Name, "err", err)
		return
	}
	g.replaced.put(sha256.Sum256([]byte(ar.cookie)), &refreshResult{session: ns, value: value}, now)
	resp.Header.Add("Set-Cookie", g.sessionCookie(value).String())
	go rt.signOutApp(ar.key)
}

// admitApp finishes an allowed request on a route with an app session:
// the bound session goes upstream in the app's cookie. It answers w and
// returns nil when the app sign-in fails, or when the request is the app's
// own login page (the user is signed in to the app already: on to where
// the app wanted to go).
func (rt *Route) admitApp(w http.ResponseWriter, r *http.Request, p *Principal, cookieHeader, path string) *http.Request {
	rec := recordOf(r.Context())
	key, err := rt.bindApp(r.Context(), w, p, cookieHeader, rec.ClientIP)
	if err != nil {
		rt.g.opts.Log.Error("signing in to the app failed", "route", rt.opts.Name, "session", p.SessionRef, "err", err)
		rec.Decision, rec.Reason = audit.DecisionError, ReasonAppSignInFailed
		rt.g.writeError(w, r, http.StatusBadGateway, "Signing you in to the application failed. Try again shortly.", ReasonAppSignInFailed)
		return nil
	}
	if r.Method == http.MethodGet && path == "/auth/login" {
		rec.Decision, rec.Reason = audit.DecisionRedirect, ReasonAppLogin
		http.Redirect(w, r, rt.g.appReturnTo(r.Host, r.URL.Query().Get("redirect")), http.StatusFound) //nolint:gosec // G710: oidc.ReturnTo keeps it on this origin
		return nil
	}
	r.Header["Cookie"] = []string{setAppCookie(strings.Join(r.Header["Cookie"], "; "), rt.opts.AppSession.CookieName(), key)}
	ar := &appRequest{key: key, p: p, cookie: cookieValue(cookieHeader, rt.g.cookie)}
	return r.WithContext(context.WithValue(r.Context(), appContextKey{}, ar))
}
