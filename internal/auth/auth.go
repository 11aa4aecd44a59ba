// Package auth is gatehouse's authentication and authorization path: it
// establishes who a request comes from (a sealed session cookie, or a bearer
// access token), applies the route's policy, and hands the identity to the
// upstream in headers gatehouse controls plus a signed assertion. It also
// serves gatehouse's own endpoints under /.gatehouse/: sign-in (chooser,
// callback), sign-out, back-channel logout, /.gatehouse/me, and the
// assertion keys at /.well-known/gatehouse/jwks.json.
//
// Every path that admits a request runs through [Gate.Check], so the proxy,
// the SPOE agent and the forward-auth endpoint apply exactly the same
// authentication and policy.
//
// Reasons (kebab-case, in audit records and on the denied page) are the
// policy package's plus the Reason constants below.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/assertion"
	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/oidc"
	"github.com/gatehouse-proxy/gatehouse/internal/policy"
	"github.com/gatehouse-proxy/gatehouse/internal/session"
	"github.com/gatehouse-proxy/gatehouse/internal/token"
)

// Reasons this package decides, besides the policy package's.
const (
	// ReasonExpired: the session reached its absolute lifetime.
	ReasonExpired = "expired"
	// ReasonIdle: the session was idle longer than the idle timeout.
	ReasonIdle = "idle-timeout"
	// ReasonRevoked: the session was ended by logout, back-channel logout
	// or a failed refresh.
	ReasonRevoked = "revoked"
	// ReasonBadSession: the cookie could not be opened (tampered,
	// truncated, sealed with a removed key).
	ReasonBadSession = "bad-session"
	// ReasonRefreshFailed: the provider refused to refresh the session's
	// tokens; the session ended.
	ReasonRefreshFailed = "refresh-failed"
	// ReasonProviderNotAllowed: the user signed in with a provider the
	// route does not accept.
	ReasonProviderNotAllowed = "provider-not-allowed"
	// ReasonLoginStarted: the user was sent to sign in.
	ReasonLoginStarted = "login"
	// ReasonCallback and friends mark gatehouse's endpoints in audit
	// records.
	ReasonCallback       = "login-complete"
	ReasonCallbackFailed = "login-failed"
	ReasonLogout         = "logout"
	ReasonBackchannel    = "backchannel-logout"
	ReasonCrossSite      = "cross-site-request"
	ReasonProviderDown   = "provider-unavailable"
	// ReasonAppCredential: the request carried the app's own credential
	// (a route's AppCredentials) and was let through to the app's
	// authentication.
	ReasonAppCredential = "app-credential" //nolint:gosec // a reason code, not a credential
)

// Auth methods for audit records.
const (
	MethodSession = "session"
	MethodBearer  = "bearer"
)

// Headers names the identity headers sent upstream.
type Headers struct {
	User, Email, Groups, Assertion string
}

// Options configures a Gate.
type Options struct {
	// PublicURL is gatehouse's external origin (scheme://host[:port]).
	// Required.
	PublicURL *url.URL
	// Providers are the sign-in providers, in chooser order.
	Providers []*oidc.Provider
	// DisplayNames maps provider names to what the chooser shows.
	DisplayNames map[string]string
	// Store keeps sessions. Required.
	Store session.Store
	// Codec seals the login flow cookies. Required.
	Codec *session.Codec
	// CookieName is the session cookie's name, without __Host-.
	// Default: gh_session.
	CookieName string
	// AbsoluteLifetime is the session lifetime, for the cookie's Max-Age.
	AbsoluteLifetime time.Duration
	// RefreshBefore is how long before the access token's expiry the
	// session is refreshed. Default: 1m.
	RefreshBefore time.Duration
	// KeepClaims are the claims kept in sessions for policy and headers.
	KeepClaims []string
	// KeepAccessToken keeps the provider's access token in sessions, for
	// routes that pass it upstream.
	KeepAccessToken bool
	// Bearer verifies bearer access tokens; nil refuses them.
	Bearer *token.Verifier
	// Signer mints the upstream assertion; nil sends none.
	Signer *assertion.Signer
	// Headers names the identity headers. Required.
	Headers Headers
	// IDP serves the built-in provider under /.gatehouse/idp; nil for none.
	IDP http.Handler
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// WatchInterval is how often an upgraded connection's session is
	// checked for revocation. Default: 500ms.
	WatchInterval time.Duration
	// Log is the operator log. Default: discard.
	Log *slog.Logger
}

// Gate authenticates and authorizes requests and serves gatehouse's
// endpoints. It is immutable apart from its caches and safe for concurrent
// use; a configuration reload builds a new one over the same store.
type Gate struct {
	opts      Options
	secure    bool   // cookies get Secure and __Host-
	cookie    string // the session cookie's name as sent
	providers map[string]*oidc.Provider
	names     []string // provider names, in order
	cop       *http.CrossOriginProtection

	routeFor   func(host, path string) *Route // set by SetRouter
	localStore bool                           // the store never waits (session.CookieStore)

	refreshes   flight            // one refresh per session at a time
	appFlights  flight            // one app sign-in per session and route at a time
	appRejected rejectedKeys      // app session keys the app refused
	appEnded    rejectedKeys      // app session keys of ended sessions, already signed out
	appRoutes   map[string]*Route // routes with an app session, by name; set while building
	replaced    replaceMap        // old cookie → refreshed session, for in-flight requests
	usedState   *oidc.ReplayCache // flow states already redeemed
}

// New validates opts and returns a Gate.
func New(opts Options) (*Gate, error) {
	var problems []string
	if opts.PublicURL == nil || opts.PublicURL.Host == "" {
		problems = append(problems, "PublicURL is required")
	}
	if opts.Store == nil {
		problems = append(problems, "Store is required")
	}
	if opts.Codec == nil {
		problems = append(problems, "Codec is required")
	}
	if opts.Headers.User == "" || opts.Headers.Email == "" || opts.Headers.Groups == "" || opts.Headers.Assertion == "" {
		problems = append(problems, "every identity header name is required")
	}
	if len(problems) > 0 {
		return nil, errors.New("auth: " + strings.Join(problems, "; "))
	}
	if opts.CookieName == "" {
		opts.CookieName = "gh_session"
	}
	if opts.RefreshBefore <= 0 {
		opts.RefreshBefore = time.Minute
	}
	if opts.AbsoluteLifetime <= 0 {
		opts.AbsoluteLifetime = session.DefaultAbsoluteLifetime
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = 500 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	h := &opts.Headers
	h.User = http.CanonicalHeaderKey(h.User)
	h.Email = http.CanonicalHeaderKey(h.Email)
	h.Groups = http.CanonicalHeaderKey(h.Groups)
	h.Assertion = http.CanonicalHeaderKey(h.Assertion)
	g := &Gate{
		opts:      opts,
		secure:    opts.PublicURL.Scheme == "https",
		providers: map[string]*oidc.Provider{},
		cop:       http.NewCrossOriginProtection(),
		// A state is refused again for as long as its flow could live.
		usedState: oidc.NewReplayCache(oidc.MaxFlowAge+time.Minute, maxStates),
	}
	g.cookie = session.CookieName(opts.CookieName, g.secure)
	if nw, ok := opts.Store.(interface{ NeverWaits() bool }); ok {
		g.localStore = nw.NeverWaits()
	}
	for _, p := range opts.Providers {
		if _, dup := g.providers[p.Name()]; dup {
			return nil, fmt.Errorf("auth: provider %s listed twice", p.Name())
		}
		g.providers[p.Name()] = p
		g.names = append(g.names, p.Name())
	}
	return g, nil
}

// SetRouter gives the gate the proxy's route lookup, so the sign-in page
// can offer the providers of the route a user is going to. Call it once,
// before serving.
func (g *Gate) SetRouter(fn func(host, path string) *Route) { g.routeFor = fn }

// RouteOptions configures a route's access.
type RouteOptions struct {
	// Name is the route's name.
	Name string
	// Policy decides access. Required.
	Policy *policy.Policy
	// Providers are the providers that may sign users in; empty means all.
	Providers []string
	// API answers 401 instead of redirecting to sign in.
	API bool
	// IdentityHeaders maps extra header names to claim names.
	IdentityHeaders map[string]string
	// PassAuthorization forwards the client's Authorization header.
	PassAuthorization bool
	// PassAccessToken sends the user's access token upstream as a bearer
	// token (Options.KeepAccessToken must be set for sessions).
	PassAccessToken bool
	// AppCredentials are request headers that carry the app's own
	// credential (Metabase: X-Api-Key, X-Metabase-Session). A request
	// with one is let through to the app's authentication, without
	// identity and without the policy, when AllowAppCredentials is set;
	// otherwise those headers are removed and the request is checked as
	// any other (proxied requests only).
	AppCredentials      []string
	AllowAppCredentials bool
	// AppSession, when set, binds the app's own session to the user's
	// gatehouse session (see AppSession).
	AppSession AppSession
}

// Route is one route's access check; it implements the proxy's Guard.
type Route struct {
	g         *Gate
	opts      RouteOptions
	providers []string
	headers   []string // every header Admit may set, canonical
	appExtra  string   // the session's Extra key of this route's app binding
}

// Route builds the access check for one route.
func (g *Gate) Route(opts RouteOptions) (*Route, error) {
	if opts.Policy == nil {
		return nil, fmt.Errorf("auth: route %s has no policy", opts.Name)
	}
	rt := &Route{g: g, opts: opts, providers: opts.Providers, appExtra: extraAppPrefix + opts.Name}
	if len(rt.providers) == 0 {
		rt.providers = g.names
	}
	for _, p := range rt.providers {
		if g.providers[p] == nil {
			return nil, fmt.Errorf("auth: route %s: unknown provider %s", opts.Name, p)
		}
	}
	h := g.opts.Headers
	rt.headers = []string{h.User, h.Email, h.Groups, h.Assertion}
	if opts.PassAccessToken {
		rt.headers = append(rt.headers, "Authorization")
	}
	extra := make(map[string]string, len(opts.IdentityHeaders))
	for name, claim := range opts.IdentityHeaders {
		ck := http.CanonicalHeaderKey(name)
		extra[ck] = claim
		rt.headers = append(rt.headers, ck)
	}
	rt.opts.IdentityHeaders = extra
	if opts.AppSession != nil {
		if g.appRoutes == nil {
			g.appRoutes = map[string]*Route{}
		}
		g.appRoutes[opts.Name] = rt
	}
	for i, h := range rt.opts.AppCredentials {
		rt.opts.AppCredentials[i] = http.CanonicalHeaderKey(h)
	}
	slices.Sort(rt.headers[4:])
	return rt, nil
}

// Name returns the route's name.
func (rt *Route) Name() string { return rt.opts.Name }

// PassAuthorization reports whether the route forwards the client's
// Authorization header to the app.
func (rt *Route) PassAuthorization() bool { return rt.opts.PassAuthorization }

// Gate returns the gate the route belongs to.
func (rt *Route) Gate() *Gate { return rt.g }

// Headers returns the identity header names, in canonical form.
func (g *Gate) Headers() Headers { return g.opts.Headers }

// SessionCookieName is the session cookie's name as browsers send it
// (with __Host- when public_url is https).
func (g *Gate) SessionCookieName() string { return g.cookie }

// HeaderNames lists every identity header the route may set upstream; the
// proxy copies exactly these from the checked request to the outbound one.
func (rt *Route) HeaderNames() []string { return rt.headers }

// recordOf returns the request's audit record, or a throwaway one for
// requests that did not come through audit.Handler (in-process calls).
func recordOf(ctx context.Context) *audit.Record {
	if rec := audit.FromContext(ctx); rec != nil {
		return rec
	}
	return &audit.Record{}
}

// maxStates bounds the redeemed-state cache.
const maxStates = 100_000

// flight runs one function per key at a time; callers for the same key
// wait for and share its result.
type flight struct {
	mu    sync.Mutex // guards calls
	calls map[string]*flightCall
}

type flightCall struct {
	done chan struct{}
	val  *refreshResult
}

func (f *flight) do(key string, fn func() *refreshResult) *refreshResult {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flightCall{}
	}
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		<-c.done
		return c.val
	}
	c := &flightCall{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.val = fn()
	return c.val
}
