package app

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
	"github.com/gatehouse-proxy/gatehouse/internal/idheader"
	"github.com/gatehouse-proxy/gatehouse/internal/listener"
	"github.com/gatehouse-proxy/gatehouse/internal/policy"
	"github.com/gatehouse-proxy/gatehouse/internal/proxy"
	"github.com/gatehouse-proxy/gatehouse/internal/secret"
	"github.com/gatehouse-proxy/gatehouse/internal/upstream"
)

// runtime is everything built from one configuration. It is immutable: a
// reload builds a new runtime and swaps it in atomically, so a request sees
// one configuration from start to end.
type runtime struct {
	cfg        *config.Config
	proxy      *proxy.Handler
	upstreams  []*upstream.Upstream
	adminToken secret.Value
	trust      listener.Trust
	gate       *auth.Gate
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
		}
		for _, t := range uc.Targets {
			opts.Targets = append(opts.Targets, t.URL)
		}
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
		pol, err := policy.Compile(rc.Policy.PolicyOptions())
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", rc.Name, err)
		}
		guard, err := gate.Route(auth.RouteOptions{
			Name:              rc.Name,
			Policy:            pol,
			Providers:         rc.Providers,
			API:               rc.API,
			IdentityHeaders:   rc.IdentityHeaders,
			PassAuthorization: rc.PassAuthorization,
			PassAccessToken:   rc.PassAccessToken,
		})
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
	gate.SetRouter(func(host, path string) *auth.Route {
		if r, ok := ph.Match(host, path); ok {
			if g, ok := r.Guard.(*auth.Route); ok {
				return g
			}
		}
		return nil
	})
	rt.proxy = ph
	return rt, nil
}

// close releases what a retired runtime holds once its requests are done.
func (rt *runtime) close() {
	for _, u := range rt.upstreams {
		u.CloseIdle()
	}
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
