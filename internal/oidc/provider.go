package oidc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-proxy/gatehouse/internal/token"
)

// Defaults for ProviderOptions.
const (
	DefaultGroupsClaim = "groups"
	// DefaultLeeway is the clock skew allowed on iat and exp.
	DefaultLeeway = 60 * time.Second
	// DefaultHTTPTimeout bounds one request to the provider.
	DefaultHTTPTimeout = 10 * time.Second
	// discoveryRetry is how long a failed discovery is remembered before the
	// next login tries again, so a provider that is down is not hammered.
	discoveryRetry = 10 * time.Second
	// maxIDTokenAge refuses an ID token issued implausibly long ago: the
	// token endpoint has just minted it.
	maxIDTokenAge = 10 * time.Minute
	// minTokenLifetime and maxTokenLifetime clamp expires_in, which some
	// providers get wrong (idp-notes: do not trust it blindly).
	minTokenLifetime = 30 * time.Second
	maxTokenLifetime = 24 * time.Hour
)

// Errors returned by Provider methods. Each names a check; the message never
// contains a token, code or secret.
var (
	// ErrDiscovery: the provider's discovery document could not be fetched
	// or does not name exactly the configured issuer.
	ErrDiscovery = errors.New("oidc: provider discovery failed")
	// ErrExchange: the token endpoint refused the code or failed.
	ErrExchange = errors.New("oidc: code exchange failed")
	// ErrIDToken: the ID token is missing or fails a check (signature, iss,
	// aud, azp, exp, iat, nonce, sub).
	ErrIDToken = errors.New("oidc: ID token invalid")
	// ErrUserInfo: the UserInfo request failed or returned another sub.
	ErrUserInfo = errors.New("oidc: userinfo invalid")
	// ErrRefresh: the provider refused the refresh token (invalid_grant and
	// the like): the session must end.
	ErrRefresh = errors.New("oidc: refresh refused")
	// ErrRefreshUnavailable: the refresh could not be completed for a
	// reason that may pass (network, 5xx): the session may continue while
	// its tokens are still valid.
	ErrRefreshUnavailable = errors.New("oidc: refresh unavailable")
	// ErrLogoutToken: a back-channel logout token fails a check.
	ErrLogoutToken = errors.New("oidc: logout token invalid")
)

// ProviderOptions configures one OpenID provider gatehouse signs users in
// with.
type ProviderOptions struct {
	// Name is the provider's configured name. Required.
	Name string
	// Issuer is the exact issuer URL; discovery is fetched from
	// Issuer + "/.well-known/openid-configuration" and must name it
	// exactly (OIDC Discovery §4.3). Required.
	Issuer string
	// ClientID and ClientSecret are gatehouse's client credentials at the
	// provider. ClientID is required; the secret may be empty for a public
	// client (PKCE still applies).
	ClientID     string
	ClientSecret string
	// Scopes are requested at login. Default: openid, email, profile.
	// "openid" is added when missing.
	Scopes []string
	// AuthParams are extra authorization request parameters, such as
	// access_type=offline for Google.
	AuthParams map[string]string
	// GroupsClaim is the claim holding the user's groups, a dotted path
	// for nested claims ("realm_access.roles"). Default: groups.
	GroupsClaim string
	// Algorithms are the pinned ID token signature algorithms.
	// Default: RS256.
	Algorithms []string
	// HTTPClient makes every request to the provider (discovery, token,
	// UserInfo, JWKS). Default: a client with DefaultHTTPTimeout.
	HTTPClient *http.Client
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives discovery and JWKS failures. Default: discard.
	Logger *slog.Logger
}

// Provider is one OpenID provider. It discovers the provider's metadata on
// first use (and again after a failure, at most every 10 s), so gatehouse
// starts even while a provider is down. It is safe for concurrent use.
type Provider struct {
	opts   ProviderOptions
	client *http.Client

	mu      sync.Mutex // guards meta, lastTry, lastErr
	meta    *metadata
	lastTry time.Time
	lastErr error

	replays *ReplayCache // logout token IDs seen
}

// metadata is what discovery found, immutable once built.
type metadata struct {
	endpoint      oauth2.Endpoint
	userInfoURL   string
	endSessionURL string
	issParam      bool // authorization_response_iss_parameter_supported
	keys          *token.KeySet
	verifier      *gooidc.IDTokenVerifier
}

// NewProvider validates opts and returns a Provider. It makes no request.
func NewProvider(opts ProviderOptions) (*Provider, error) {
	var problems []string
	if opts.Name == "" {
		problems = append(problems, "name is required")
	}
	if u, err := url.Parse(opts.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		problems = append(problems, "issuer must be an absolute http(s) URL without query or fragment")
	}
	if opts.ClientID == "" {
		problems = append(problems, "client ID is required")
	}
	if len(opts.Scopes) == 0 {
		opts.Scopes = []string{gooidc.ScopeOpenID, "email", "profile"}
	} else if !slices.Contains(opts.Scopes, gooidc.ScopeOpenID) {
		opts.Scopes = append([]string{gooidc.ScopeOpenID}, opts.Scopes...)
	}
	if opts.GroupsClaim == "" {
		opts.GroupsClaim = DefaultGroupsClaim
	}
	if len(opts.Algorithms) == 0 {
		opts.Algorithms = []string{"RS256"}
	}
	for _, a := range opts.Algorithms {
		if strings.HasPrefix(a, "HS") || strings.EqualFold(a, "none") {
			problems = append(problems, fmt.Sprintf("algorithm %s is not allowed for ID tokens", a))
		}
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("oidc provider %s: %s", opts.Name, strings.Join(problems, "; "))
	}
	return &Provider{opts: opts, client: opts.HTTPClient,
		replays: NewReplayCache(maxLogoutTokenAge+DefaultLeeway, maxReplayEntries)}, nil
}

// Name returns the provider's configured name.
func (p *Provider) Name() string { return p.opts.Name }

// Issuer returns the provider's issuer.
func (p *Provider) Issuer() string { return p.opts.Issuer }

func (p *Provider) ctx(ctx context.Context) context.Context {
	return gooidc.ClientContext(ctx, p.client)
}

// discover returns the provider's metadata, fetching it when needed.
func (p *Provider) discover(ctx context.Context) (*metadata, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.meta != nil {
		return p.meta, nil
	}
	now := p.opts.Now()
	if p.lastErr != nil && now.Sub(p.lastTry) < discoveryRetry {
		return nil, p.lastErr
	}
	p.lastTry = now
	m, err := p.fetchMetadata(ctx)
	if err != nil {
		p.lastErr = fmt.Errorf("%w: %s: %w", ErrDiscovery, p.opts.Issuer, err)
		p.opts.Logger.Warn("OIDC discovery failed", "provider", p.opts.Name, "err", p.lastErr)
		return nil, p.lastErr
	}
	p.meta, p.lastErr = m, nil
	return m, nil
}

func (p *Provider) fetchMetadata(ctx context.Context) (*metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultHTTPTimeout)
	defer cancel()
	// NewProvider refuses a document whose issuer differs from the URL.
	gp, err := gooidc.NewProvider(p.ctx(ctx), p.opts.Issuer)
	if err != nil {
		return nil, err
	}
	var extra struct {
		JWKSURL      string `json:"jwks_uri"`
		EndSession   string `json:"end_session_endpoint"`
		ISSParameter bool   `json:"authorization_response_iss_parameter_supported"`
	}
	if err := gp.Claims(&extra); err != nil {
		return nil, err
	}
	if extra.JWKSURL == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	keys, err := token.NewKeySet(token.KeySetOptions{
		Issuer:     p.opts.Issuer,
		JWKSURL:    extra.JWKSURL,
		Algorithms: p.opts.Algorithms,
		HTTPClient: p.client,
		Now:        p.opts.Now,
		Logger:     p.opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	ep := gp.Endpoint()
	// Client authentication: client_secret_basic unless the provider says
	// otherwise; x/oauth2 auto-detects and remembers.
	ep.AuthStyle = oauth2.AuthStyleAutoDetect
	m := &metadata{
		endpoint:      ep,
		userInfoURL:   gp.UserInfoEndpoint(),
		endSessionURL: extra.EndSession,
		issParam:      extra.ISSParameter,
		keys:          keys,
	}
	m.verifier = gooidc.NewVerifier(p.opts.Issuer, keys, &gooidc.Config{
		ClientID:             p.opts.ClientID,
		SupportedSigningAlgs: p.opts.Algorithms,
		Now:                  p.opts.Now,
	})
	return m, nil
}

func (p *Provider) oauth2Config(m *metadata, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.opts.ClientID,
		ClientSecret: p.opts.ClientSecret,
		Endpoint:     m.endpoint,
		RedirectURL:  redirectURL,
		Scopes:       p.opts.Scopes,
	}
}

// AuthCodeURL returns the authorization request URL for a login flow: code
// flow with PKCE S256, state and nonce (RFC 9700 §2.1.1).
func (p *Provider) AuthCodeURL(ctx context.Context, f *Flow, redirectURL string) (string, error) {
	m, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(f.Verifier),
		gooidc.Nonce(f.Nonce),
	}
	for k, v := range p.opts.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return p.oauth2Config(m, redirectURL).AuthCodeURL(f.State, opts...), nil
}

// Identity is what a login or refresh established about the user.
type Identity struct {
	Issuer        string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	// Username is preferred_username, when the provider sends one.
	Username string
	Groups   []string
	// SID is the provider's session ID (sid), for back-channel logout.
	SID string
	// Claims are the ID token's claims merged with UserInfo's, decoded
	// with strict JSON.
	Claims map[string]any

	// RefreshToken, IDToken and AccessToken are the provider's tokens.
	// Secret: keep them out of logs.
	RefreshToken string
	IDToken      string
	AccessToken  string
	// Expiry is when the access token expires (expires_in, clamped).
	Expiry time.Time
}

// CheckIssuerParam applies RFC 9207: when the authorization response
// carries iss, it must be this provider's issuer; when the provider
// advertises the parameter, it must be present (mix-up defence,
// RFC 9700 §4.4).
func (p *Provider) CheckIssuerParam(ctx context.Context, iss string, present bool) error {
	m, err := p.discover(ctx)
	if err != nil {
		return err
	}
	if present {
		if iss != p.opts.Issuer {
			return errors.New("oidc: iss in the authorization response is not the provider's issuer")
		}
		return nil
	}
	if m.issParam {
		return errors.New("oidc: iss missing from the authorization response")
	}
	return nil
}

// Exchange redeems an authorization code with its PKCE verifier, verifies
// the ID token against the flow's nonce and returns the identity.
func (p *Provider) Exchange(ctx context.Context, code string, f *Flow, redirectURL string) (*Identity, error) {
	m, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	cfg := p.oauth2Config(m, redirectURL)
	tok, err := cfg.Exchange(p.ctx(ctx), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrExchange, oauthErrorCode(err))
	}
	if !strings.EqualFold(tok.TokenType, "bearer") && tok.TokenType != "" {
		return nil, fmt.Errorf("%w: token_type is not Bearer", ErrExchange)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, fmt.Errorf("%w: no id_token in the token response", ErrIDToken)
	}
	id, err := p.verifyIDToken(ctx, m, raw, f.Nonce, "", "")
	if err != nil {
		return nil, err
	}
	if err := p.completeIdentity(ctx, m, id, tok); err != nil {
		return nil, err
	}
	return id, nil
}

// Refresh redeems refreshToken and returns the refreshed identity, which
// must be the same user (OIDC Core §12.2: same iss and sub). The error wraps
// ErrRefresh when the provider refused the token and the session must end,
// ErrRefreshUnavailable when it might work later.
func (p *Provider) Refresh(ctx context.Context, refreshToken, subject string) (*Identity, error) {
	m, err := p.discover(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefreshUnavailable, err)
	}
	cfg := p.oauth2Config(m, "")
	old := &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}
	tok, err := cfg.TokenSource(p.ctx(ctx), old).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			return nil, fmt.Errorf("%w: %s", ErrRefresh, oauthErrorCode(err))
		}
		return nil, fmt.Errorf("%w: %s", ErrRefreshUnavailable, oauthErrorCode(err))
	}
	id := &Identity{Issuer: p.opts.Issuer, Subject: subject}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		// A refreshed ID token carries no nonce to check (§12.2) but must
		// be for the same user.
		nid, err := p.verifyIDToken(ctx, m, raw, "", subject, "refresh")
		switch {
		case errors.Is(err, token.ErrUnknownKey), errors.Is(err, token.ErrJWKSUnavailable):
			return nil, fmt.Errorf("%w: %w", ErrRefreshUnavailable, err)
		case err != nil:
			return nil, fmt.Errorf("%w: %w", ErrRefresh, err)
		}
		id = nid
	}
	if err := p.completeIdentity(ctx, m, id, tok); err != nil {
		if errors.Is(err, ErrUserInfo) && id.IDToken == "" {
			return nil, fmt.Errorf("%w: %w", ErrRefreshUnavailable, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrRefresh, err)
	}
	if id.RefreshToken == "" {
		id.RefreshToken = refreshToken // not rotated
	}
	return id, nil
}

// completeIdentity adds the token response's tokens and expiry, and
// UserInfo's claims when the groups claim is missing or the refresh
// returned no ID token.
func (p *Provider) completeIdentity(ctx context.Context, m *metadata, id *Identity, tok *oauth2.Token) error {
	now := p.opts.Now()
	id.AccessToken = tok.AccessToken
	id.RefreshToken = tok.RefreshToken
	exp := tok.Expiry
	switch {
	case exp.IsZero():
		exp = now.Add(time.Hour)
		if t, ok := id.Claims["exp"].(float64); ok {
			exp = time.Unix(int64(t), 0)
		}
	case exp.Sub(now) < minTokenLifetime:
		exp = now.Add(minTokenLifetime)
	case exp.Sub(now) > maxTokenLifetime:
		exp = now.Add(maxTokenLifetime)
	}
	id.Expiry = exp
	needInfo := id.Claims == nil
	if !needInfo {
		_, has := LookupClaim(id.Claims, p.opts.GroupsClaim)
		needInfo = !has
	}
	if !needInfo || m.userInfoURL == "" || tok.AccessToken == "" {
		if id.Claims == nil {
			return fmt.Errorf("%w: no ID token and no UserInfo endpoint", ErrUserInfo)
		}
		return nil
	}
	ui, err := p.userInfo(ctx, m, tok)
	if err != nil {
		return err
	}
	// OIDC Core §5.3.4: the UserInfo sub must be the ID token's.
	sub, _ := ui["sub"].(string)
	if subtle.ConstantTimeCompare([]byte(sub), []byte(id.Subject)) != 1 {
		return fmt.Errorf("%w: sub differs from the ID token's", ErrUserInfo)
	}
	if id.Claims == nil {
		id.Claims = map[string]any{}
	}
	for k, v := range ui {
		if _, ok := id.Claims[k]; !ok || k == p.opts.GroupsClaim {
			id.Claims[k] = v
		}
	}
	p.fillFromClaims(id)
	return nil
}

// userInfo fetches the UserInfo claims with go-jose's strict JSON decoder.
func (p *Provider) userInfo(ctx context.Context, m *metadata, tok *oauth2.Token) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.userInfoURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUserInfo, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: request failed", ErrUserInfo)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d", ErrUserInfo, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/jwt") {
		return nil, fmt.Errorf("%w: signed UserInfo responses are not supported", ErrUserInfo)
	}
	claims, err := decodeStrict(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUserInfo, err)
	}
	return claims, nil
}

// verifyIDToken runs go-oidc's checks (signature with pinned algorithms,
// iss, aud contains client_id, exp), then the ones go-oidc leaves to the
// caller (security-notes §2.2): strict claim decoding, sub, iat, azp and
// the nonce. For a refreshed token, wantSub is the session's subject.
func (p *Provider) verifyIDToken(ctx context.Context, m *metadata, raw, nonce, wantSub, phase string) (*Identity, error) {
	// The signature first, for a typed error: go-oidc flattens its key
	// set's errors into text, and an unknown key (a rotation within the
	// refetch floor) or an unreachable JWKS is worth retrying.
	payload, err := m.keys.VerifySignatureTrusted(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIDToken, token.Reason(err), err)
	}
	if _, err := m.verifier.Verify(p.ctx(ctx), raw); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrIDToken, idTokenReason(err))
	}
	// The claims go-oidc decoded with encoding/json are not used: these
	// come from the same verified payload, decoded strictly.
	std, all, err := decodeClaims(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIDToken, err)
	}
	now := p.opts.Now()
	switch {
	case std.Subject == "":
		return nil, fmt.Errorf("%w: no sub", ErrIDToken)
	case std.Issuer != p.opts.Issuer:
		return nil, fmt.Errorf("%w: iss", ErrIDToken)
	case std.IssuedAt == nil:
		return nil, fmt.Errorf("%w: no iat", ErrIDToken)
	case std.IssuedAt.Time().After(now.Add(DefaultLeeway)):
		return nil, fmt.Errorf("%w: iat in the future", ErrIDToken)
	case phase == "" && now.Sub(std.IssuedAt.Time()) > maxIDTokenAge:
		return nil, fmt.Errorf("%w: iat too old", ErrIDToken)
	}
	// OIDC Core §3.1.3.7 steps 3-5: with several audiences azp must be
	// present; when present it must be gatehouse.
	azp, hasAZP := all["azp"].(string)
	if len(std.Audience) > 1 && !hasAZP {
		return nil, fmt.Errorf("%w: several audiences and no azp", ErrIDToken)
	}
	if hasAZP && azp != p.opts.ClientID {
		return nil, fmt.Errorf("%w: azp is not gatehouse's client", ErrIDToken)
	}
	if _, ok := all["azp"]; ok && !hasAZP {
		return nil, fmt.Errorf("%w: azp is not a string", ErrIDToken)
	}
	got, _ := all["nonce"].(string)
	if phase == "" {
		if nonce == "" || subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
			return nil, fmt.Errorf("%w: nonce does not match", ErrIDToken)
		}
	}
	if wantSub != "" && std.Subject != wantSub {
		return nil, fmt.Errorf("%w: refreshed ID token is for another subject", ErrIDToken)
	}
	id := &Identity{Issuer: std.Issuer, Subject: std.Subject, Claims: all, IDToken: raw}
	p.fillFromClaims(id)
	return id, nil
}

// fillFromClaims sets the display fields and groups from id.Claims.
func (p *Provider) fillFromClaims(id *Identity) {
	c := id.Claims
	id.Email, _ = c["email"].(string)
	switch v := c["email_verified"].(type) {
	case bool:
		id.EmailVerified = v
	case string: // some providers send "true" (Cognito, older Entra)
		id.EmailVerified = v == "true"
	}
	id.Name, _ = c["name"].(string)
	id.Username, _ = c["preferred_username"].(string)
	id.SID, _ = c["sid"].(string)
	id.Groups = nil
	if v, ok := LookupClaim(c, p.opts.GroupsClaim); ok {
		id.Groups = stringList(v)
	}
}

// EndSessionURL returns the provider's RP-initiated logout URL for a
// session, or "" when the provider has no end_session_endpoint.
// postLogoutRedirect must be registered at the provider.
func (p *Provider) EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirect, state string) string {
	m, err := p.discover(ctx)
	if err != nil || m.endSessionURL == "" {
		return ""
	}
	u, err := url.Parse(m.endSessionURL)
	if err != nil {
		return ""
	}
	q := u.Query()
	if idTokenHint != "" {
		q.Set("id_token_hint", idTokenHint)
	}
	q.Set("client_id", p.opts.ClientID)
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
		if state != "" {
			q.Set("state", state)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// idTokenReason names the go-oidc check that failed, without its message
// (which may quote claims).
func idTokenReason(err error) string {
	var te *gooidc.TokenExpiredError
	switch {
	case errors.As(err, &te):
		return "expired"
	case errors.Is(err, token.ErrUnknownKey), errors.Is(err, token.ErrJWKSUnavailable),
		errors.Is(err, token.ErrSignature), errors.Is(err, token.ErrAlgorithm),
		errors.Is(err, token.ErrHeader), errors.Is(err, token.ErrMalformed):
		return token.Reason(err)
	case strings.Contains(err.Error(), "audience"):
		return "audience"
	case strings.Contains(err.Error(), "issuer"), strings.Contains(err.Error(), "different provider"):
		return "issuer"
	}
	return "verification failed"
}

// oauthErrorCode returns the OAuth error code of a token endpoint failure
// (invalid_grant, ...), never its description or the response body.
func oauthErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" && len(re.ErrorCode) <= 64 {
			return re.ErrorCode
		}
		if re.Response != nil {
			return fmt.Sprintf("status %d", re.Response.StatusCode)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "request failed"
}
