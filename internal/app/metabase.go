package app

import (
	"context"
	"errors"
	"fmt"
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
	client   *metabase.Client
	secret   []byte
	groups   map[string]string // IdP group → Metabase group; nil sends them as they are
	verified bool              // require a verified email
	now      func() time.Time
}

// metabaseUpstreamURL is the base URL of server-side calls to Metabase: the
// upstream round tripper picks the target, whatever the host.
const metabaseUpstreamURL = "http://metabase.upstream"

func (a *App) metabaseSession(ctx context.Context, mb *config.Metabase, up *upstream.Upstream) (auth.AppSession, error) {
	if mb == nil || mb.Mode == "" || up == nil {
		return nil, nil
	}
	opts := metabase.Options{
		BaseURL:    metabaseUpstreamURL,
		HTTPClient: &http.Client{Transport: up, Timeout: metabase.DefaultTimeout},
	}
	switch mb.Mode {
	case "jwt":
		v, err := a.secrets.Resolve(ctx, mb.JWTSecret.Ref)
		if err != nil {
			return nil, fmt.Errorf("jwt_secret: %w", err)
		}
		c, err := metabase.New(opts)
		if err != nil {
			return nil, err
		}
		return &metabaseJWT{client: c, secret: v.Reveal(), groups: mb.Groups, verified: !mb.AllowUnverifiedEmail, now: time.Now}, nil
	case "broker":
		key, err := a.secrets.Resolve(ctx, mb.APIKey.Ref)
		if err != nil {
			return nil, fmt.Errorf("api_key: %w", err)
		}
		bk, err := a.secrets.Resolve(ctx, mb.BrokerKey.Ref)
		if err != nil {
			return nil, fmt.Errorf("broker_key: %w", err)
		}
		opts.APIKey = key
		c, err := metabase.New(opts)
		if err != nil {
			return nil, err
		}
		b, err := metabase.NewBroker(metabase.BrokerOptions{Client: c, BrokerKey: bk, GroupMap: mb.Groups, Logger: a.log.With("metabase", "broker")})
		if err != nil {
			return nil, err
		}
		return &metabaseBroker{client: c, broker: b, verified: !mb.AllowUnverifiedEmail}, nil
	}
	return nil, fmt.Errorf("unknown mode %q", mb.Mode)
}

// errUnverifiedEmail: Metabase finds accounts by email, so an email the
// provider has not verified could take over someone else's account.
var errUnverifiedEmail = errors.New("metabase: the provider does not say the user's email is verified (metabase.allow_unverified_email)")

// metabaseBroker is auth.AppSession for mode broker: gatehouse keeps the
// user's Metabase account through the admin API and signs in with a
// password only it can derive.
type metabaseBroker struct {
	client   *metabase.Client
	broker   *metabase.Broker
	verified bool // require a verified email
}

func (m *metabaseBroker) CookieName() string { return metabaseSessionCookie }

func (m *metabaseBroker) SignIn(ctx context.Context, p *auth.Principal, client netip.Addr) (string, time.Time, error) {
	if p.Email == "" {
		return "", time.Time{}, errors.New("metabase: the user has no email, which Metabase signs users in by")
	}
	if m.verified && !p.EmailVerified {
		return "", time.Time{}, errUnverifiedEmail
	}
	if client.IsValid() {
		ctx = metabase.WithRequestInfo(ctx, metabase.RequestInfo{ClientIP: client.String()})
	}
	s, err := m.broker.SignIn(ctx, metabase.Identity{Issuer: p.Issuer, Subject: p.Subject, Email: p.Email, Name: p.Name, Groups: p.Groups})
	if err != nil {
		return "", time.Time{}, err
	}
	return string(s.Key.Reveal()), s.Expires, nil
}

func (m *metabaseBroker) SignOut(ctx context.Context, key string) error {
	return m.client.Logout(ctx, secret.NewValue([]byte(key)))
}

func (m *metabaseBroker) Owner(ctx context.Context, key string) (string, error) {
	return metabaseOwner(ctx, m.client, key)
}

// metabaseSessionCookie is Metabase's session cookie (contract 2.1).
const metabaseSessionCookie = "metabase.SESSION"

func (m *metabaseJWT) CookieName() string { return metabaseSessionCookie }

func (m *metabaseJWT) SignIn(ctx context.Context, p *auth.Principal, client netip.Addr) (string, time.Time, error) {
	if p.Email == "" {
		return "", time.Time{}, errors.New("metabase: the user has no email, which Metabase signs users in by")
	}
	if m.verified && !p.EmailVerified {
		return "", time.Time{}, errUnverifiedEmail
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

func (m *metabaseJWT) Owner(ctx context.Context, key string) (string, error) {
	return metabaseOwner(ctx, m.client, key)
}

// metabaseOwner returns the email of the user a Metabase session is for.
func metabaseOwner(ctx context.Context, c *metabase.Client, key string) (string, error) {
	a, err := c.CurrentUser(ctx, secret.NewValue([]byte(key)))
	if err != nil {
		return "", err
	}
	return a.Email, nil
}

// DeprovisionMetabaseUser deactivates the Metabase account with this email
// on a route in mode broker (`gatehouse metabase deprovision`), which also
// ends its Metabase sessions. A deactivated account stays so: the broker
// never reactivates one. Server-side calls go straight to the route's
// upstream targets, tried in order.
func DeprovisionMetabaseUser(ctx context.Context, cfg *config.Config, route, email string) error {
	var rc *config.Route
	for i := range cfg.Routes {
		if cfg.Routes[i].Name == route {
			rc = &cfg.Routes[i]
		}
	}
	switch {
	case rc == nil:
		return fmt.Errorf("no route %q in the configuration", route)
	case rc.Metabase == nil || rc.Metabase.Mode != "broker":
		return fmt.Errorf("route %q is not a metabase route in mode broker", route)
	}
	res := secret.NewResolver(secret.ResolverOptions{})
	key, err := res.Resolve(ctx, rc.Metabase.APIKey.Ref)
	if err != nil {
		return fmt.Errorf("metabase.api_key: %w", err)
	}
	bk, err := res.Resolve(ctx, rc.Metabase.BrokerKey.Ref)
	if err != nil {
		return fmt.Errorf("metabase.broker_key: %w", err)
	}
	var errs []error
	for _, t := range cfg.Upstreams[rc.Upstream].Targets {
		c, err := metabase.New(metabase.Options{BaseURL: t.URL.String(), APIKey: key})
		if err != nil {
			return err
		}
		b, err := metabase.NewBroker(metabase.BrokerOptions{Client: c, BrokerKey: bk, GroupMap: rc.Metabase.Groups})
		if err != nil {
			return err
		}
		if err := b.Deprovision(ctx, email); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.URL.Redacted(), err))
			continue
		}
		return nil
	}
	return errors.Join(errs...)
}
