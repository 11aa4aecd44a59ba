package idp

import (
	"net/url"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// amrPassword is the amr value of a password login (RFC 8176).
const amrPassword = "pwd"

// authRequest is a stored authorization request (op.AuthRequest). op
// only ever sees snapshots, so it can read one while a login updates the
// stored request.
type authRequest struct {
	id           string
	created      time.Time
	clientID     string
	redirectURI  string
	scopes       []string
	state, nonce string
	responseMode oidc.ResponseMode
	challenge    *oidc.CodeChallenge
	loginHint    string
	binding      string // hash of the login cookie value; "" until the form is shown

	// Set by a successful login.
	done              bool
	subject, username string
	sid               string // the OP session the login started
	authTime          time.Time
}

func (a *authRequest) expired(now time.Time) bool { return !now.Before(a.created.Add(authRequestTTL)) }

func (a *authRequest) snapshot() *authRequest {
	c := *a
	c.scopes = slices.Clone(a.scopes)
	return &c
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{amrPassword} }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return oidc.ResponseTypeCode }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return slices.Clone(a.scopes) }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// refreshRequest is a refresh token looked up for the refresh grant
// (op.RefreshTokenRequest).
type refreshRequest struct {
	grant, sid, clientID, subject, username string
	scopes                                  []string // as granted
	current                                 []string // as asked for by this refresh, if narrowed
	authTime                                time.Time
}

func (r *refreshRequest) GetAMR() []string       { return []string{amrPassword} }
func (r *refreshRequest) GetAudience() []string  { return []string{r.clientID} }
func (r *refreshRequest) GetAuthTime() time.Time { return r.authTime }
func (r *refreshRequest) GetClientID() string    { return r.clientID }
func (r *refreshRequest) GetSubject() string     { return r.subject }
func (r *refreshRequest) GetScopes() []string {
	if r.current != nil {
		return slices.Clone(r.current)
	}
	return slices.Clone(r.scopes)
}
func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.current = slices.Clone(scopes) }

// client adapts a Client to op.Client: a confidential web client using
// the code flow, with refresh tokens, bearer access tokens, and user
// claims in the ID token.
type client struct {
	Client
	p *Provider
}

func (c *client) GetID() string          { return c.ID }
func (c *client) RedirectURIs() []string { return slices.Clone(c.Client.RedirectURIs) }
func (c *client) PostLogoutRedirectURIs() []string {
	return slices.Clone(c.Client.PostLogoutRedirectURIs)
}
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return c.p.idTTL }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(scope string) bool     { return scope == scopeGroups }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) LoginURL(id string) string {
	return c.p.base + pathLogin + "?id=" + url.QueryEscape(id)
}
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
