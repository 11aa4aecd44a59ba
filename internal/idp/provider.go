package idp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client is a relying party registered with the provider. Every client is
// confidential: it authenticates at the token and revocation endpoints
// with its secret, by client_secret_basic or client_secret_post.
type Client struct {
	// ID is the client_id. Required, unique.
	ID string
	// Secret is the client secret. Required. It is compared in constant
	// time and never logged or echoed in an error.
	Secret string
	// RedirectURIs are the registered redirect_uri values, matched exactly.
	// At least one is required.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the post_logout_redirect_uri values the
	// end_session endpoint may redirect to for this client, matched
	// exactly. Any other value is refused (400), not followed.
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI, when set, receives an OpenID Connect
	// Back-Channel Logout 1.0 logout token whenever an OP session this
	// client took part in ends (EndSessions, or RP-initiated logout).
	BackchannelLogoutURI string
}

// ProviderOptions configures a Provider. Zero fields take the defaults
// shown.
type ProviderOptions struct {
	// Issuer is the provider's issuer: an absolute http or https URL
	// without query, fragment or trailing slash. Its path is where the
	// provider is mounted; ServeHTTP expects the full, unstripped path.
	Issuer string
	// Users is the user store. Required; replace it with SetUsers.
	Users *Users
	// Limiter limits failed logins (default NewLimiter(LimiterOptions{})).
	Limiter *Limiter
	// Clients are the registered relying parties. At least one.
	Clients []Client
	// ClientIP returns the client address of a login request, for rate
	// limiting (default: the IP of the request's RemoteAddr). Behind a
	// trusted proxy, pass the address the proxy reported.
	ClientIP func(*http.Request) netip.Addr
	// AccessTokenTTL is the lifetime of access tokens (default 5m).
	AccessTokenTTL time.Duration
	// IDTokenTTL is the lifetime of ID tokens (default 5m). Short on
	// purpose: relying parties refresh, and a refresh picks up changes
	// to the users file.
	IDTokenTTL time.Duration
	// RefreshTokenTTL is how long a refresh token stays valid unused
	// (default 12h). Each refresh rotates the token and starts a new TTL.
	RefreshTokenTTL time.Duration
	// Now is the clock for the provider's storage (default time.Now).
	// The op library stamps token iat/exp with the real clock.
	Now func() time.Time
	// Log receives the provider's events (default: discarded). Tokens,
	// codes, passwords and secrets are never logged.
	Log *slog.Logger
	// HTTPClient delivers back-channel logout tokens (default: a client
	// with a 5s timeout).
	HTTPClient *http.Client
}

const (
	defaultTokenTTL   = 5 * time.Minute
	defaultRefreshTTL = 12 * time.Hour
	// maxBodyBytes bounds every request body the provider reads.
	maxBodyBytes = 64 << 10
)

// Paths of the endpoints below the issuer. The op library's defaults are
// kept so the discovery document is the only thing a relying party needs.
const (
	pathDiscovery  = "/.well-known/openid-configuration"
	pathAuthorize  = "/authorize"
	pathToken      = "/oauth/token" //nolint:gosec // G101: a path, not a credential
	pathUserinfo   = "/userinfo"
	pathRevoke     = "/revoke"
	pathEndSession = "/end_session"
	pathKeys       = "/keys"
	pathLogin      = "/login"
	pathLoggedOut  = "/logged-out"
)

// Provider is gatehouse's built-in OpenID provider. It is an http.Handler
// for every path below its issuer and binds no address itself. It is safe
// for concurrent use.
type Provider struct {
	issuer     string
	base       string // path of the issuer, the mount point
	secure     bool   // issuer is https: cookies get Secure
	clients    map[string]*client
	limiter    *Limiter
	clientIP   func(*http.Request) netip.Addr
	accessTTL  time.Duration
	idTTL      time.Duration
	refreshTTL time.Duration
	now        func() time.Time
	log        *slog.Logger
	httpClient *http.Client

	users atomic.Pointer[Users]
	keys  *keyring
	store *storage
	op    *op.Provider
	opH   http.Handler // op's router with the issuer path stripped
}

// NewProvider validates opts, reporting every problem at once, generates
// an RS256 signing key and returns the provider.
func NewProvider(opts ProviderOptions) (*Provider, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	iss, err := url.Parse(opts.Issuer)
	switch {
	case opts.Issuer == "":
		bad("Issuer", "required")
	case err != nil:
		bad("Issuer", "not a URL")
	case iss.Scheme != "http" && iss.Scheme != "https" || iss.Host == "" || iss.Opaque != "":
		bad("Issuer", "want an absolute http or https URL")
	case iss.User != nil || iss.RawQuery != "" || iss.Fragment != "" || strings.HasSuffix(opts.Issuer, "?") || strings.Contains(opts.Issuer, "#"):
		bad("Issuer", "must not have user info, a query or a fragment")
	case strings.HasSuffix(iss.Path, "/"):
		bad("Issuer", "must not end with /")
	}
	if opts.Users == nil {
		bad("Users", "required")
	}
	if len(opts.Clients) == 0 {
		bad("Clients", "at least one client is required")
	}
	clients := make(map[string]*client, len(opts.Clients))
	for i, c := range opts.Clients {
		f := fmt.Sprintf("Clients[%d]", i)
		switch {
		case c.ID == "":
			bad(f+".ID", "required")
		case clients[c.ID] != nil:
			bad(f+".ID", "duplicate client %q", c.ID)
		}
		if c.Secret == "" {
			bad(f+".Secret", "required")
		}
		if len(c.RedirectURIs) == 0 {
			bad(f+".RedirectURIs", "at least one is required")
		}
		for j, u := range c.RedirectURIs {
			if msg := checkURL(u); msg != "" {
				bad(fmt.Sprintf("%s.RedirectURIs[%d]", f, j), "%s", msg)
			}
		}
		for j, u := range c.PostLogoutRedirectURIs {
			if msg := checkURL(u); msg != "" {
				bad(fmt.Sprintf("%s.PostLogoutRedirectURIs[%d]", f, j), "%s", msg)
			}
		}
		if c.BackchannelLogoutURI != "" {
			if msg := checkURL(c.BackchannelLogoutURI); msg != "" {
				bad(f+".BackchannelLogoutURI", "%s", msg)
			}
		}
		if c.ID != "" && clients[c.ID] == nil {
			cc := c
			cc.RedirectURIs = append([]string(nil), c.RedirectURIs...)
			cc.PostLogoutRedirectURIs = append([]string(nil), c.PostLogoutRedirectURIs...)
			clients[c.ID] = &client{Client: cc}
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"AccessTokenTTL", opts.AccessTokenTTL}, {"IDTokenTTL", opts.IDTokenTTL}, {"RefreshTokenTTL", opts.RefreshTokenTTL}} {
		if d.v < 0 {
			bad(d.name, "must not be negative")
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("idp: invalid provider options:\n%w", errors.Join(errs...))
	}

	p := &Provider{
		issuer:     opts.Issuer,
		base:       iss.Path,
		secure:     iss.Scheme == "https",
		clients:    clients,
		limiter:    opts.Limiter,
		clientIP:   opts.ClientIP,
		accessTTL:  orDefault(opts.AccessTokenTTL, defaultTokenTTL),
		idTTL:      orDefault(opts.IDTokenTTL, defaultTokenTTL),
		refreshTTL: orDefault(opts.RefreshTokenTTL, defaultRefreshTTL),
		now:        opts.Now,
		log:        opts.Log,
		httpClient: opts.HTTPClient,
	}
	if p.limiter == nil {
		if p.limiter, err = NewLimiter(LimiterOptions{}); err != nil {
			return nil, fmt.Errorf("idp: %w", err)
		}
	}
	if p.clientIP == nil {
		p.clientIP = remoteIP
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.httpClient == nil {
		p.httpClient = &http.Client{
			Timeout:       5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	for _, c := range clients {
		c.p = p
	}
	p.users.Store(opts.Users)
	if p.keys, err = newKeyring(); err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	p.store = newStorage(p)

	// The key that seals opaque access tokens and codes. They are also
	// looked up in storage, so the key only adds tamper evidence; a new
	// one each start is fine because a restart forgets the tokens anyway.
	var cryptoKey [32]byte
	if _, err := io.ReadFull(rand.Reader, cryptoKey[:]); err != nil {
		return nil, fmt.Errorf("idp: generating token key: %w", err)
	}
	config := &op.Config{
		CodeMethodS256:                    true,
		AuthMethodPost:                    true,
		GrantTypeRefreshToken:             true,
		SupportedScopes:                   supportedScopes,
		SupportedClaims:                   supportedClaims,
		BackChannelLogoutSupported:        true,
		BackChannelLogoutSessionSupported: true,
		DefaultLogoutRedirectURI:          p.issuer + pathLoggedOut,
	}
	opOpts := []op.Option{
		// AES-256-GCM only: the default also accepts unauthenticated
		// AES-CFB ciphertexts from older releases.
		op.WithCrypto(op.NewAES256GCMCrypto(cryptoKey, "1")),
		// No CORS: the relying parties are servers, and a permissive
		// policy with credentials would only widen the attack surface.
		op.WithCORSOptions(nil),
	}
	if !p.secure {
		opOpts = append(opOpts, op.WithAllowInsecure())
	}
	p.op, err = op.NewProvider(config, p.store, op.StaticIssuer(p.issuer), opOpts...)
	if err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	p.opH = http.StripPrefix(p.base, p.op)
	return p, nil
}

var (
	supportedScopes = []string{oidc.ScopeOpenID, oidc.ScopeEmail, oidc.ScopeProfile, scopeGroups, oidc.ScopeOfflineAccess}
	supportedClaims = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "azp", "at_hash", "c_hash", "sid",
		"email", "email_verified", "name", "preferred_username", "groups"}
)

// scopeGroups asks for the user's groups in the "groups" claim.
const scopeGroups = "groups"

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// checkURL returns what is wrong with a registered URL, or "".
func checkURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return "empty URL"
	case err != nil:
		return "not a URL"
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return "want an absolute http or https URL"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "must not have a fragment"
	case u.User != nil:
		return "must not have user info"
	}
	return ""
}

// remoteIP is the default ClientIP: the IP of r.RemoteAddr.
func remoteIP(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// Issuer returns the issuer URL.
func (p *Provider) Issuer() string { return p.issuer }

// SetUsers replaces the user store, as on a reload of the users file.
// Tokens issued from now on, refreshed ones included, carry the new
// email, name and groups; a refresh for a user no longer in the store
// fails with invalid_grant.
func (p *Provider) SetUsers(u *Users) {
	if u == nil {
		return
	}
	p.users.Store(u)
}

// RotateKey generates a new signing key, which signs every token from now
// on. The previous key stays in the JWKS so tokens it signed still
// verify; the one before it is dropped.
func (p *Provider) RotateKey() error {
	if err := p.keys.rotate(); err != nil {
		return fmt.Errorf("idp: rotating signing key: %w", err)
	}
	p.log.Info("idp signing key rotated", "kid", p.keys.current().ID())
	return nil
}

// EndSessions ends every OP session of the user with the given subject:
// their refresh and access tokens stop working and pending logins are
// dropped. It then delivers a back-channel logout token to every client
// with a BackchannelLogoutURI that the user signed in to in those
// sessions, and returns the delivery errors, joined.
func (p *Provider) EndSessions(ctx context.Context, subject string) error {
	targets := p.store.endSessions(subject, "")
	return p.deliverLogouts(ctx, targets)
}

// ServeHTTP serves the provider's endpoints. r.URL.Path is the full path,
// starting with the issuer's path.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, p.base)
	if !ok || (rest != "" && rest[0] != '/') {
		http.NotFound(w, r)
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if rest != pathDiscovery && rest != pathKeys {
		// RFC 6749, section 5.1: token responses must not be cached.
		h.Set("Cache-Control", "no-store")
	}
	switch rest {
	case pathDiscovery:
		p.serveDiscovery(w, r)
	case pathLogin:
		p.serveLogin(w, r)
	case pathLoggedOut:
		p.serveLoggedOut(w, r)
	case pathToken:
		// Only the two grants gatehouse needs; op would also route the
		// JWT bearer grant (RFC 7523) to storage.
		switch gt := r.FormValue("grant_type"); gt {
		case string(oidc.GrantTypeCode), string(oidc.GrantTypeRefreshToken):
			p.opH.ServeHTTP(w, r)
		default:
			op.RequestError(w, r, oidc.ErrUnsupportedGrantType().WithDescription("grant_type must be authorization_code or refresh_token"), nil)
		}
	case pathAuthorize, pathUserinfo, pathRevoke, pathEndSession, pathKeys:
		p.opH.ServeHTTP(w, r)
	default:
		// Among others op's /authorize/callback: the login handler issues
		// the code itself, so an auth request ID alone never yields one.
		http.NotFound(w, r)
	}
}

// serveDiscovery answers the discovery document, trimmed to what the
// provider really supports (op advertises implicit flows, the "none" auth
// method, introspection and device authorization by default).
func (p *Provider) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := op.ContextWithIssuer(r.Context(), p.issuer)
	c := op.CreateDiscoveryConfig(ctx, p.op, p.store)
	c.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
	c.ResponseModesSupported = []string{string(oidc.ResponseModeQuery)}
	c.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
	methods := []oidc.AuthMethod{oidc.AuthMethodBasic, oidc.AuthMethodPost}
	c.TokenEndpointAuthMethodsSupported = methods
	c.RevocationEndpointAuthMethodsSupported = methods
	c.TokenEndpointAuthSigningAlgValuesSupported = nil
	c.RevocationEndpointAuthSigningAlgValuesSupported = nil
	c.IntrospectionEndpoint = ""
	c.IntrospectionEndpointAuthMethodsSupported = nil
	c.IntrospectionEndpointAuthSigningAlgValuesSupported = nil
	c.DeviceAuthorizationEndpoint = ""
	c.CheckSessionIframe = ""
	c.RequestObjectSigningAlgValuesSupported = nil
	c.CodeChallengeMethodsSupported = []oidc.CodeChallengeMethod{oidc.CodeChallengeMethodS256}
	op.Discover(w, c)
}
