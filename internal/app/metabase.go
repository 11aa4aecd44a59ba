package app

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
	"github.com/gatehouse-proxy/gatehouse/internal/metabase"
	"github.com/gatehouse-proxy/gatehouse/internal/secret"
	"github.com/gatehouse-proxy/gatehouse/internal/upstream"
)

// metabaseJWT is auth.AppSession for a metabase route in mode jwt: it signs
// the user in with Metabase's JWT SSO on the back channel, through the
// route's upstream pool (so health checks and balancing apply).
type metabaseJWT struct {
	client *metabase.Client
	secret []byte
	groups map[string]string // IdP group → Metabase group; nil sends them as they are
	now    func() time.Time
}

// metabaseUpstreamURL is the base URL of server-side calls to Metabase: the
// upstream round tripper picks the target, whatever the host.
const metabaseUpstreamURL = "http://metabase.upstream"

func (a *App) metabaseSession(ctx context.Context, mb *config.Metabase, up *upstream.Upstream) (auth.AppSession, error) {
	if mb == nil || mb.Mode != "jwt" || up == nil {
		return nil, nil
	}
	v, err := a.secrets.Resolve(ctx, mb.JWTSecret.Ref)
	if err != nil {
		return nil, err
	}
	c, err := metabase.New(metabase.Options{
		BaseURL:    metabaseUpstreamURL,
		HTTPClient: &http.Client{Transport: up, Timeout: metabase.DefaultTimeout},
	})
	if err != nil {
		return nil, err
	}
	return &metabaseJWT{client: c, secret: v.Reveal(), groups: mb.Groups, now: time.Now}, nil
}

// metabaseSessionCookie is Metabase's session cookie (contract 2.1).
const metabaseSessionCookie = "metabase.SESSION"

func (m *metabaseJWT) CookieName() string { return metabaseSessionCookie }

func (m *metabaseJWT) SignIn(ctx context.Context, p *auth.Principal, client netip.Addr) (string, time.Time, error) {
	if p.Email == "" {
		return "", time.Time{}, errors.New("metabase: the user has no email, which Metabase signs users in by")
	}
	groups := p.Groups
	if m.groups != nil {
		groups = []string{}
		for _, g := range p.Groups {
			if mg, ok := m.groups[g]; ok {
				groups = append(groups, mg)
			}
		}
	} else if groups == nil {
		groups = []string{} // the provider says: no groups
	}
	tok, err := metabase.MintSSOToken(metabase.User{Email: p.Email, DisplayName: p.Name, Groups: groups}, m.secret, m.now())
	if err != nil {
		return "", time.Time{}, err
	}
	if client.IsValid() {
		ctx = metabase.WithRequestInfo(ctx, metabase.RequestInfo{ClientIP: client.String()})
	}
	s, err := m.client.SSOSession(ctx, tok)
	if err != nil {
		return "", time.Time{}, err
	}
	return string(s.Key.Reveal()), s.Expires, nil
}

func (m *metabaseJWT) SignOut(ctx context.Context, key string) error {
	return m.client.Logout(ctx, secret.NewValue([]byte(key)))
}
