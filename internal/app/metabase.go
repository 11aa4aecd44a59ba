package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
	"github.com/gatehouse-proxy/gatehouse/internal/metabase"
	"github.com/gatehouse-proxy/gatehouse/internal/secret"
	"github.com/gatehouse-proxy/gatehouse/internal/upstream"
)

// metabaseSession is auth.AppSession for a metabase route with a mode:
// signIn is the mode's way to a Metabase session (JWT SSO, or the
// broker), the rest is shared. Calls go through the route's upstream pool
// (health checks and balancing apply).
type metabaseSession struct {
	client   *metabase.Client
	verified bool // require a verified email
	signIn   func(ctx context.Context, p *auth.Principal) (metabase.Session, error)
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
	m := &metabaseSession{verified: !mb.AllowUnverifiedEmail}
	switch mb.Mode {
	case "jwt":
		v, err := a.secrets.Resolve(ctx, mb.JWTSecret.Ref)
		if err != nil {
			return nil, fmt.Errorf("jwt_secret: %w", err)
		}
		if m.client, err = metabase.New(opts); err != nil {
			return nil, err
		}
		secretKey := v.Reveal()
		m.signIn = func(ctx context.Context, p *auth.Principal) (metabase.Session, error) {
			tok, err := metabase.MintSSOToken(metabase.User{Email: p.Email, DisplayName: p.Name, Groups: jwtGroups(p.Groups, mb.Groups)}, secretKey, time.Now())
			if err != nil {
				return metabase.Session{}, err
			}
			return m.client.SSOSession(ctx, tok)
		}
	case "broker":
		var b *metabase.Broker
		var err error
		if b, m.client, err = a.metabaseBroker(ctx, mb, up); err != nil {
			return nil, err
		}
		m.signIn = func(ctx context.Context, p *auth.Principal) (metabase.Session, error) {
			return b.SignIn(ctx, metabase.Identity{Issuer: p.Issuer, Subject: p.Subject, Email: p.Email, Name: p.Name, Groups: p.Groups})
		}
	default:
		return nil, fmt.Errorf("unknown mode %q", mb.Mode)
	}
	return m, nil
}

// metabaseBroker is the broker of a metabase route in mode broker, and
// its client (with the API key), calling Metabase through the route's
// upstream up.
func (a *App) metabaseBroker(ctx context.Context, mb *config.Metabase, up *upstream.Upstream) (*metabase.Broker, *metabase.Client, error) {
	key, err := a.secrets.Resolve(ctx, mb.APIKey.Ref)
	if err != nil {
		return nil, nil, fmt.Errorf("api_key: %w", err)
	}
	bk, err := a.secrets.Resolve(ctx, mb.BrokerKey.Ref)
	if err != nil {
		return nil, nil, fmt.Errorf("broker_key: %w", err)
	}
	c, err := metabase.New(metabase.Options{
		BaseURL:    metabaseUpstreamURL,
		HTTPClient: &http.Client{Transport: up, Timeout: metabase.DefaultTimeout},
		APIKey:     key,
	})
	if err != nil {
		return nil, nil, err
	}
	b, err := metabase.NewBroker(metabase.BrokerOptions{Client: c, BrokerKey: bk, GroupMap: mb.Groups, Logger: a.log.With("metabase", "broker")})
	return b, c, err
}

// jwtGroups is the groups claim for a user in provider groups: only the
// mapped ones, renamed, with a map; all of them as they are without. Never
// nil: an empty claim tells Metabase the user has no groups.
func jwtGroups(groups []string, mapping map[string]string) []string {
	out := []string{}
	for _, g := range groups {
		if mapping == nil {
			out = append(out, g)
		} else if mg, ok := mapping[g]; ok {
			out = append(out, mg)
		}
	}
	return out
}

// errUnverifiedEmail: Metabase finds accounts by email, so an email the
// provider has not verified could take over someone else's account.
var errUnverifiedEmail = errors.New("metabase: the provider does not say the user's email is verified (metabase.allow_unverified_email)")

func (m *metabaseSession) CookieName() string { return metabase.SessionCookie }

func (m *metabaseSession) SignIn(ctx context.Context, p *auth.Principal, client netip.Addr) (string, time.Time, error) {
	if p.Email == "" {
		return "", time.Time{}, errors.New("metabase: the user has no email, which Metabase signs users in by")
	}
	if m.verified && !p.EmailVerified {
		return "", time.Time{}, errUnverifiedEmail
	}
	if client.IsValid() {
		ctx = metabase.WithRequestInfo(ctx, metabase.RequestInfo{ClientIP: client})
	}
	s, err := m.signIn(ctx, p)
	if err != nil {
		return "", time.Time{}, err
	}
	return string(s.Key.Reveal()), s.Expires, nil
}

func (m *metabaseSession) SignOut(ctx context.Context, key string) error {
	return m.client.Logout(ctx, secret.NewValue([]byte(key)))
}

func (m *metabaseSession) Owner(ctx context.Context, key string) (string, error) {
	a, err := m.client.CurrentUser(ctx, secret.NewValue([]byte(key)))
	if err != nil {
		return "", err
	}
	return a.Email, nil
}

// DeprovisionMetabaseUser deactivates the Metabase account with this email
// on a route in mode broker (`gatehouse metabase deprovision`), which also
// ends its Metabase sessions. A deactivated account stays so: the broker
// never reactivates one. Server-side calls go through the route's upstream
// as gatehouse serve builds it (its TLS settings, a target that refuses
// connections skipped for the next), without health checks.
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
	a := &App{secrets: secret.NewResolver(secret.ResolverOptions{}), log: slog.New(slog.DiscardHandler)}
	uc := cfg.Upstreams[rc.Upstream]
	tlsConfig, err := a.upstreamTLS(ctx, rc.Upstream, uc.TLS)
	if err != nil {
		return err
	}
	opts := upstream.Options{
		Name:        rc.Upstream,
		DialTimeout: uc.DialTimeout.D(),
		TLSConfig:   tlsConfig,
		Retries:     len(uc.Targets) - 1,
	}
	addTargets(&opts, uc.Targets)
	up, err := upstream.New(opts)
	if err != nil {
		return err
	}
	defer up.Close()
	b, _, err := a.metabaseBroker(ctx, rc.Metabase, up)
	if err != nil {
		return fmt.Errorf("metabase.%w", err)
	}
	return b.Deprovision(ctx, email)
}
