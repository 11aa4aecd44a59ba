package app

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
	"github.com/gatehouse-proxy/gatehouse/internal/haproxy"
	"github.com/gatehouse-proxy/gatehouse/internal/idheader"
	"github.com/gatehouse-proxy/gatehouse/internal/listener"
	"github.com/gatehouse-proxy/gatehouse/internal/metabase"
	"github.com/gatehouse-proxy/gatehouse/internal/proxy"
	"github.com/gatehouse-proxy/gatehouse/internal/secret"
	"github.com/gatehouse-proxy/gatehouse/internal/upstream"
)

// runtime is everything built from one configuration. It is immutable: a
// reload builds a new runtime and swaps it in atomically, so a request sees
// one configuration from start to end.
type runtime struct {
	cfg         *config.Config
	proxy       *proxy.Handler
	upstreams   []*upstream.Upstream
	adminToken  secret.Value
	trust       listener.Trust
	gate        *auth.Gate
	forwardAuth *haproxy.ForwardAuth // nil unless forward_auth
}

// build turns a validated configuration into a runtime. It resolves
// secrets, so it may fail on a configuration that `check` accepted.
func (a *App) build(ctx context.Context, cfg *config.Config) (*runtime, error) {
	rt := &runtime{cfg: cfg}
	for _, p := range cfg.TrustedProxies {
		rt.trust = append(rt.trust, p.Prefix)
	}
	if !cfg.Admin.Token.IsZero() {
		v, err := a.secrets.Resolve(ctx, cfg.Admin.Token.Ref)
		if err != nil {
			return nil, fmt.Errorf("admin.token: %w", err)
		}
		rt.adminToken = v
	}
	ups := map[string]*upstream.Upstream{}
	for name, uc := range cfg.Upstreams {
		opts := upstream.Options{
			Name:                  name,
			DialTimeout:           uc.DialTimeout.D(),
			ResponseHeaderTimeout: uc.ResponseHeaderTimeout.D(),
			IdleConnTimeout:       uc.IdleConnTimeout.D(),
			MaxIdleConnsPerTarget: uc.MaxIdleConnsPerTarget,
			Observe:               proxy.Observer(a.metrics.UpstreamLatency),
			Balance:               uc.Balance,
			SlowStart:             uc.SlowStart.D(),
			Passive: upstream.PassiveOptions{
				Failures: uc.EjectAfter, Ejection: uc.EjectFor.D(), MaxEjection: 10 * uc.EjectFor.D(),
			},
			MaxConnsPerTarget: uc.MaxConnsPerTarget,
			MaxQueue:          uc.MaxQueue,
			Retries:           uc.Retries,
			Previous:          a.previousUpstream(name),
			OnTransition: func(tr upstream.Transition) {
				a.log.Warn("upstream target health changed", "upstream", tr.Pool, "target", tr.Target,
					"check", tr.Check, "up", tr.Up, "reason", tr.Reason)
			},
		}
		tlsConfig, err := a.upstreamTLS(ctx, name, uc.TLS)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = tlsConfig
		if uc.Balance == "hash" {
			source, hname, _ := config.ParseHashOn(uc.HashOn)
			switch source {
			case "cookie":
				opts.Hash = upstream.HashOptions{Source: upstream.HashCookie, Name: hname}
			case "header":
				opts.Hash = upstream.HashOptions{Source: upstream.HashHeader, Name: hname}
			default:
				opts.Hash = upstream.HashOptions{Source: upstream.HashClientIP, ClientIP: clientIPKey}
			}
		}
		if hc := uc.HealthCheck; hc != nil {
			opts.HealthCheck = &upstream.CheckOptions{
				Method: hc.Method, Path: hc.Path, Status: hc.Status, Interval: hc.Interval.D(),
				Timeout: hc.Timeout.D(), Rise: hc.Rise, Fall: hc.Fall,
			}
		}
		addTargets(&opts, uc.Targets)
		u, err := upstream.New(opts)
		if err != nil {
			return nil, err
		}
		ups[name] = u
		rt.upstreams = append(rt.upstreams, u)
	}
	h := cfg.Headers
	stripper, err := idheader.NewStripper(idheader.Options{Names: []string{h.User, h.Email, h.Groups, h.Assertion}})
	if err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	gate, err := a.buildGate(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rt.gate = gate
	var routes []*proxy.Route
	for _, rc := range cfg.Routes {
		pol, err := rc.Policy.Compiled()
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", rc.Name, err)
		}
		ro := auth.RouteOptions{
			Name:              rc.Name,
			Policy:            pol,
			Providers:         rc.Providers,
			API:               rc.API,
			IdentityHeaders:   rc.IdentityHeaders,
			PassAuthorization: rc.PassAuthorization,
			PassAccessToken:   rc.PassAccessToken,
		}
		if mb := rc.Metabase; mb != nil {
			ro.AppCredentials = []string{metabase.APIKeyHeader, metabase.SessionHeader}
			ro.AllowAppCredentials = mb.AllowAPIClients
			if ro.AppSession, err = a.metabaseSession(ctx, mb, ups[rc.Upstream]); err != nil {
				return nil, fmt.Errorf("route %s: metabase: %w", rc.Name, err)
			}
		}
		guard, err := gate.Route(ro)
		if err != nil {
			return nil, err
		}
		routes = append(routes, &proxy.Route{
			Name:         rc.Name,
			Host:         rc.Host,
			Path:         rc.Path,
			Upstream:     ups[rc.Upstream],
			PreserveHost: rc.PreserveHost,
			Guard:        guard,
			WebSocket:    rc.WebSocket,
			Timeouts: proxy.Timeouts{
				ResponseHeader: rc.Timeouts.ResponseHeader.D(),
				Idle:           rc.Timeouts.Idle.D(),
				Total:          rc.Timeouts.Total.D(),
			},
		})
	}
	ph, err := proxy.New(proxy.Options{
		Routes:          routes,
		Stripper:        stripper,
		Trusted:         rt.trust,
		Headers:         proxy.Headers{RequestID: h.RequestID},
		HSTS:            hstsValue(cfg.HSTS),
		BodyReadTimeout: cfg.Server.BodyReadTimeout.D(),
		Ready:           a.isReady,
		Internal:        gate,
		Log:             a.log,
	})
	if err != nil {
		return nil, err
	}
	rt.proxy = ph
	gate.SetRouter(rt.authRoute)
	if cfg.ForwardAuth {
		rt.forwardAuth, err = haproxy.NewForwardAuth(haproxy.ForwardAuthOptions{
			Route:     rt.authRoute,
			Trusted:   rt.trust.Contains,
			RequestID: h.RequestID,
		})
		if err != nil {
			return nil, err
		}
	}
	return rt, nil
}

// authRoute returns the access check of the route for a canonical host
// and path, or nil.
func (rt *runtime) authRoute(host, path string) *auth.Route {
	if r, ok := rt.proxy.Match(host, path); ok {
		if g, ok := r.Guard.(*auth.Route); ok {
			return g
		}
	}
	return nil
}

// close releases what a retired runtime holds once its requests are done:
// its health checks stop and its idle connections close.
func (rt *runtime) close() {
	for _, u := range rt.upstreams {
		u.Close()
	}
}

// previousUpstream returns the running runtime's upstream of that name, so
// a reload carries the health of unchanged targets over.
func (a *App) previousUpstream(name string) *upstream.Upstream {
	old := a.rt.Load()
	if old == nil {
		return nil
	}
	for _, u := range old.upstreams {
		if u.Name() == name {
			return u
		}
	}
	return nil
}

// addTargets adds an upstream's targets and their weights to opts.
func addTargets(opts *upstream.Options, targets []config.Target) {
	for _, t := range targets {
		opts.Targets = append(opts.Targets, t.URL.URL)
		opts.Weights = append(opts.Weights, t.Weight)
	}
}

// clientIPKey is the consistent-hash key of balance: hash with
// hash_on: client_ip: the client address from the trusted front end, as
// the proxy recorded it.
func clientIPKey(r *http.Request) netip.Addr {
	if rec := audit.FromContext(r.Context()); rec != nil {
		return rec.ClientIP
	}
	return netip.Addr{}
}

func hstsValue(h config.HSTS) string {
	if h.MaxAge <= 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("max-age=")
	b.WriteString(strconv.FormatInt(int64(h.MaxAge.D().Seconds()), 10))
	if h.IncludeSubdomains {
		b.WriteString("; includeSubDomains")
	}
	if h.Preload {
		b.WriteString("; preload")
	}
	return b.String()
}
