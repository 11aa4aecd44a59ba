package config

import (
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/policy"
)

// Identity configures authentication.
type Identity struct {
	// Session configures the session cookie.
	Session Session `yaml:"session"`

	// Providers are external OpenID Connect providers (Okta, Keycloak,
	// Dex, Entra ID, Google, Cognito, ...), found by discovery.
	Providers []Provider `yaml:"providers"`

	// Builtin, when set, serves gatehouse's own OpenID provider at
	// PublicURL + /.gatehouse/idp, with users from a file. It appears as
	// the provider named "builtin".
	Builtin *Builtin `yaml:"builtin"`

	// Bearer lists the issuers whose JWT access tokens are accepted in
	// `Authorization: Bearer`, for APIs and command-line clients.
	Bearer []BearerIssuer `yaml:"bearer"`

	// Assertion configures the signed identity assertion (an ES256 JWT)
	// sent upstream in headers.assertion.
	Assertion Assertion `yaml:"assertion"`
}

// Session configures the sealed session cookie.
type Session struct {
	// CookieName is the session cookie's name; over HTTPS it is sent as
	// __Host-<name>. Default: gh_session.
	CookieName string `yaml:"cookie_name"`

	// Keys seal the session cookie (AES-256-GCM). The first key seals;
	// every key opens, so a new key goes first and the old one stays until
	// the absolute lifetime has passed. Each secret is 32 random bytes,
	// base64 or hex encoded (`openssl rand -base64 32`). Default: one
	// random key per process, so sessions end at every restart (logged as
	// a warning).
	Keys []SessionKey `yaml:"keys"`

	// IdleTimeout ends a session unused this long. Default: 30m.
	IdleTimeout Duration `yaml:"idle_timeout"`

	// AbsoluteLifetime ends every session this long after sign-in, however
	// active. Default: 12h.
	AbsoluteLifetime Duration `yaml:"absolute_lifetime"`

	// RefreshBefore is how long before the provider's access token expires
	// gatehouse refreshes it (with the refresh token), updating groups and
	// claims. Default: 1m.
	RefreshBefore Duration `yaml:"refresh_before"`

	// KeepClaims are ID token claims kept in the session for policy
	// (claims conditions, CEL) and identity_headers. Claims named in a
	// route's claims conditions and identity_headers are kept
	// automatically. Keep the list short: the session is a cookie.
	// Default: none.
	KeepClaims []string `yaml:"keep_claims"`
}

func (s *Session) setDefaults() {
	s.CookieName = "gh_session"
	s.IdleTimeout = Duration(30 * time.Minute)
	s.AbsoluteLifetime = Duration(12 * time.Hour)
	s.RefreshBefore = Duration(time.Minute)
}

// SessionKey is one session sealing key.
type SessionKey struct {
	// ID names the key inside every cookie it seals: 1 to 8 letters or
	// digits. Never reuse an ID for a new secret. Required.
	ID string `yaml:"id"`

	// Secret is a reference to 32 random bytes, base64 or hex encoded.
	// Required.
	Secret SecretRef `yaml:"secret"`
}

// Provider is one external OpenID Connect provider.
type Provider struct {
	// Name identifies the provider in routes, audit records and the
	// sign-in page's links: letters, digits, _ . -. Required.
	Name string `yaml:"name"`

	// DisplayName is shown on the sign-in chooser. Default: the name.
	DisplayName string `yaml:"display_name"`

	// Issuer is the provider's exact issuer URL; its discovery document
	// must name exactly this issuer. Required.
	Issuer URL `yaml:"issuer"`

	// ClientID is gatehouse's client ID at the provider. Required.
	ClientID string `yaml:"client_id"`

	// ClientSecret is a reference to the client secret. Default: none (a
	// public client; PKCE is used either way).
	ClientSecret SecretRef `yaml:"client_secret"`

	// Scopes are requested at sign-in; add offline_access (or the
	// provider's equivalent) to get a refresh token, and groups where the
	// provider needs it. Default: openid, email, profile.
	Scopes []string `yaml:"scopes"`

	// AuthParams are extra authorization request parameters, such as
	// access_type: offline and prompt: consent for Google. Default: none.
	AuthParams map[string]string `yaml:"auth_params"`

	// GroupsClaim is the claim holding the user's groups; a dotted path
	// reaches into nested claims (Keycloak: realm_access.roles). When the
	// ID token lacks it, gatehouse asks the UserInfo endpoint. Default:
	// groups.
	GroupsClaim string `yaml:"groups_claim"`

	// Algorithms are the accepted ID token signature algorithms: RS256,
	// RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA.
	// Default: RS256.
	Algorithms []string `yaml:"algorithms"`
}

// Builtin is gatehouse's own OpenID provider.
type Builtin struct {
	// UsersFile is the users file (username, bcrypt password hash, email,
	// name, groups); make hashes with `gatehouse hash-password`. A relative
	// path is relative to the configuration file. Required unless
	// demo_users is set.
	UsersFile string `yaml:"users_file"`

	// DemoUsers serves the quickstart's demo users (alice / wonderland in
	// admins and analysts, bob / builder in staff) instead of a users file.
	// Their passwords are public, so every listener must then be on a
	// loopback address. Default: false.
	DemoUsers bool `yaml:"demo_users"`

	// DisplayName is shown on the sign-in chooser. Default: gatehouse.
	DisplayName string `yaml:"display_name"`
}

func (b *Builtin) setDefaults() {
	b.DisplayName = "gatehouse"
}

// BearerIssuer is an issuer of JWT access tokens.
type BearerIssuer struct {
	// Issuer is the exact iss of the tokens. Required.
	Issuer string `yaml:"issuer"`

	// JWKSURL is where the issuer's signing keys are fetched: https, or
	// http on a loopback address. Required.
	JWKSURL URL `yaml:"jwks_url"`

	// Audiences are the accepted aud values; use an API audience distinct
	// from every OIDC client ID, so that ID tokens never pass as access
	// tokens. Required.
	Audiences []string `yaml:"audiences"`

	// Algorithms are the accepted signature algorithms. Default: RS256.
	Algorithms []string `yaml:"algorithms"`

	// RequireAccessTokenType accepts only tokens with typ at+jwt
	// (RFC 9068). Default: false.
	RequireAccessTokenType bool `yaml:"require_access_token_type"`
}

// Assertion configures the identity assertion for upstreams.
type Assertion struct {
	// Keys are ES256 (P-256) signing keys, PEM encoded, by reference. The
	// first signs; all are published at /.well-known/gatehouse/jwks.json.
	// Default: one random key per process (logged as a warning), which
	// apps see as a key rotation at every restart.
	Keys []AssertionKey `yaml:"keys"`

	// TTL is each assertion's lifetime, at most 5m. Default: 5m.
	TTL Duration `yaml:"ttl"`
}

// AssertionKey is one assertion signing key.
type AssertionKey struct {
	// ID is the key's kid. Required.
	ID string `yaml:"id"`

	// PrivateKey is a reference to the PEM private key (PKCS #8 or SEC 1).
	// Required.
	PrivateKey SecretRef `yaml:"private_key"`
}

// Policy is a route's access policy. gatehouse denies unless a rule
// allows; deny rules win over allow rules and public paths.
type Policy struct {
	// Public lists path patterns open to everyone without sign-in (see
	// paths in Rule for the pattern syntax), such as Metabase's /public/
	// and /embed/. Default: none.
	Public []string `yaml:"public"`

	// Allow rules are tried in order; the first that matches allows.
	Allow []Rule `yaml:"allow"`

	// Deny rules are tried first; the first that matches denies.
	Deny []Rule `yaml:"deny"`

	compiled *policy.Policy // set by validation
}

// Rule is a conjunction: every condition that is set must hold.
type Rule struct {
	// Name identifies the rule in audit records and on the denied page.
	// Default: allow[i] or deny[i].
	Name string `yaml:"name"`

	// Authenticated requires a signed-in user (implied by groups, emails,
	// email_domains and claims).
	Authenticated bool `yaml:"authenticated"`

	// Groups: the user is in any of these groups (exact match).
	Groups []string `yaml:"groups"`

	// Emails: the user's verified email is one of these.
	Emails []string `yaml:"emails"`

	// EmailDomains: the user's verified email is in one of these domains;
	// "*.example.com" matches subdomains only.
	EmailDomains []string `yaml:"email_domains"`

	// Claims maps a claim (dotted path allowed) to its accepted values.
	Claims map[string][]string `yaml:"claims"`

	// Methods lists the accepted request methods, upper case.
	Methods []string `yaml:"methods"`

	// Paths lists path patterns: "/api" is a prefix on segment
	// boundaries; with "*" a glob on the whole path ("*" within a segment,
	// "**" across segments).
	Paths []string `yaml:"paths"`

	// SourceCIDRs lists the accepted client networks.
	SourceCIDRs []Prefix `yaml:"source_cidrs"`

	// CEL is a CEL expression that must be true, for what the other
	// conditions cannot say; it sees request.{method,host,path,source_ip}
	// and user.{issuer,subject,email,email_verified,groups,claims}.
	CEL string `yaml:"cel"`
}
