// Package app is gatehouse's composition root: it turns a configuration
// into listeners, servers and a runtime, swaps the runtime atomically on
// reload (keeping the old one when the new configuration is bad), and
// drains in-flight requests on shutdown. It is the only package that
// imports config together with the feature packages.
package app

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/haproxy"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/canon"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
	"github.com/gatehouse-proxy/gatehouse/internal/listener"
	"github.com/gatehouse-proxy/gatehouse/internal/metrics"
	"github.com/gatehouse-proxy/gatehouse/internal/proxy"
	"github.com/gatehouse-proxy/gatehouse/internal/secret"
	"github.com/gatehouse-proxy/gatehouse/internal/session"
)

// Options configures an App.
type Options struct {
	// ConfigPath is the file Reload reads; "" disables Reload.
	ConfigPath string
	// Log is the operator log. Required.
	Log *slog.Logger
	// Secrets resolves secret references; default reads the environment
	// and files.
	Secrets *secret.Resolver
	// AuditStdout receives audit records when audit.output is stdout
	// (tests); default os.Stdout.
	AuditStdout interface{ Write([]byte) (int, error) }
}

// App is a running gatehouse.
type App struct {
	log        *slog.Logger
	configPath string
	secrets    *secret.Resolver
	metrics    *metrics.Metrics
	audit      *audit.Logger

	rt       atomic.Pointer[runtime]
	ready    atomic.Bool
	identity identityState

	reloadMu sync.Mutex // serializes Reload

	servers []*server
	admin   *http.Server
	adminLn net.Listener
	certs   []*listener.CertReloader
	watches []certWatch // started by Run, stopped before it returns
	agent   *haproxy.Agent
	agentLn net.Listener
}

type certWatch struct {
	cr       *listener.CertReloader
	interval time.Duration
}

type server struct {
	name string
	srv  *http.Server
	ln   net.Listener
	tls  bool
}

// New builds an App from a validated configuration and binds its
// listeners (so port conflicts fail here, before Run).
func New(cfg *config.Config, opts Options) (*App, error) {
	if opts.Log == nil {
		return nil, errors.New("app: Log is required")
	}
	a := &App{log: opts.Log, configPath: opts.ConfigPath, secrets: opts.Secrets, metrics: metrics.New()}
	if a.secrets == nil {
		a.secrets = secret.NewResolver(secret.ResolverOptions{})
	}
	al, err := audit.New(audit.Options{
		Output: cfg.Audit.Output,
		Log:    opts.Log,
		Stdout: opts.AuditStdout,
		OnEmit: func(r *audit.Record) { a.metrics.Request(r.Route, r.Status, r.Decision) },
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	a.audit = al
	a.identity.revocations, err = session.NewRevocationList(session.RevocationOptions{
		OnOverflow: func(cutoff time.Time) {
			opts.Log.Error("session revocation list full: every session created before the cutoff is revoked", "cutoff", cutoff)
		},
	})
	if err != nil {
		al.Close()
		return nil, err
	}
	rt, err := a.build(context.Background(), cfg)
	if err != nil {
		al.Close()
		return nil, err
	}
	a.rt.Store(rt)
	a.metrics.WatchTargets(a.targetStates)
	if err := a.listen(cfg); err != nil {
		a.closeListeners()
		rt.close()
		al.Close()
		return nil, err
	}
	return a, nil
}

// public is the handler every user-facing listener serves: one audit
// record per request around the current runtime's proxy.
func (a *App) public() http.Handler {
	inFlight := a.metrics.InFlight()
	return audit.Handler(a.audit, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Inc()
		defer inFlight.Dec()
		rt := a.rt.Load()
		if rt.forwardAuth != nil && r.URL.Path == haproxy.PathForwardAuth {
			// Before the proxy, which strips the X-Forwarded-Uri and
			// X-Original-URL headers forward-auth reads (from trusted
			// callers only).
			rt.forwardAuth.ServeHTTP(w, r)
			return
		}
		rt.proxy.ServeHTTP(w, r)
	}))
}

// verdictRoute is the SPOE agent's and forward-auth's route lookup: the
// running configuration's proxy routes.
func (a *App) verdictRoute(host, path string) *auth.Route {
	return a.rt.Load().authRoute(host, path)
}

func (a *App) listen(cfg *config.Config) error {
	s := cfg.Server
	pub := a.public()
	trust := a.rt.Load().trust
	for _, lc := range cfg.Listeners {
		ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", lc.Address)
		if err != nil {
			return fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		mode, _ := listener.ParseProxyMode(lc.ProxyProtocol)
		wrapped := listener.WrapProxy(ln, mode, trust, s.ProxyHeaderTimeout.D())
		srv := &http.Server{
			Handler:           pub,
			ReadHeaderTimeout: s.ReadHeaderTimeout.D(),
			WriteTimeout:      s.WriteTimeout.D(),
			IdleTimeout:       s.IdleTimeout.D(),
			MaxHeaderBytes:    s.MaxHeaderBytes,
			ConnContext:       listener.ConnContext,
			ErrorLog:          slog.NewLogLogger(a.log.With("listener", lc.Name).Handler(), slog.LevelDebug),
			HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: s.MaxConcurrentStreams},
		}
		if lc.RedirectHTTPS {
			srv.Handler = audit.Handler(a.audit, redirectHandler(a, lc.HTTPSPort))
		}
		sv := &server{name: lc.Name, srv: srv, ln: wrapped}
		if lc.TLS != nil {
			cr, err := listener.NewCertReloader(lc.TLS.CertFile, lc.TLS.KeyFile, a.log)
			if err != nil {
				ln.Close()
				return fmt.Errorf("listener %s: %w", lc.Name, err)
			}
			a.certs = append(a.certs, cr)
			srv.TLSConfig = listener.TLSConfig(cr, lc.TLS.MinVersion)
			sv.tls = true
			a.watches = append(a.watches, certWatch{cr, lc.TLS.ReloadInterval.D()})
		}
		a.servers = append(a.servers, sv)
	}
	if sc := cfg.SPOE; sc.Address != "" {
		ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", sc.Address)
		if err != nil {
			return fmt.Errorf("spoe agent: %w", err)
		}
		agent, err := haproxy.NewAgent(haproxy.AgentOptions{
			Route:        a.verdictRoute,
			Trusted:      func(ip netip.Addr) bool { return a.rt.Load().trust.Contains(ip) },
			Audit:        a.audit,
			MaxFrameSize: uint32(sc.MaxFrameSize), //nolint:gosec // validated: 256 to 1048576
			Timeout:      sc.Timeout.D(),
			MaxInFlight:  sc.MaxInFlight,
			Observe:      a.metrics.SPOEVerdicts(),
			Log:          a.log.With("listener", "spoe"),
		})
		if err != nil {
			ln.Close()
			return err
		}
		a.agent, a.agentLn = agent, ln
	}
	if cfg.Admin.Address != "off" {
		ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", cfg.Admin.Address)
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		a.adminLn = ln
		a.admin = &http.Server{
			Handler:           a.adminHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(a.log.With("listener", "admin").Handler(), slog.LevelDebug),
		}
	}
	return nil
}

func (a *App) closeListeners() {
	for _, s := range a.servers {
		s.ln.Close()
	}
	if a.adminLn != nil {
		a.adminLn.Close()
	}
	if a.agentLn != nil {
		a.agentLn.Close()
	}
}

// isReady reports readiness: configuration loaded, listeners up, not
// shutting down, and the audit sink writing (gatehouse refuses requests it
// cannot audit, so a load balancer should move traffic elsewhere).
func (a *App) isReady() bool {
	return a.ready.Load() && a.audit.Err() == nil
}

// Addr returns the bound address of the listener with this name, or nil.
// "admin" names the admin listener.
func (a *App) Addr(name string) net.Addr {
	if name == "admin" && a.adminLn != nil {
		return a.adminLn.Addr()
	}
	if name == "spoe" && a.agentLn != nil {
		return a.agentLn.Addr()
	}
	for _, s := range a.servers {
		if s.name == name {
			return s.ln.Addr()
		}
	}
	return nil
}

// Metrics returns the process metrics (for tests).
func (a *App) Metrics() *metrics.Metrics { return a.metrics }

// Run serves until ctx is cancelled, then stops accepting, marks the
// instance not ready, waits up to server.shutdown_timeout for in-flight
// requests, flushes the audit log and returns.
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, len(a.servers)+1)
	for _, s := range a.servers {
		go func() {
			var err error
			if s.tls {
				err = s.srv.ServeTLS(s.ln, "", "")
			} else {
				err = s.srv.Serve(s.ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("listener %s: %w", s.name, err)
			}
		}()
		a.log.Info("listening", "listener", s.name, "address", s.ln.Addr().String(), "tls", s.tls)
	}
	if a.admin != nil {
		go func() {
			if err := a.admin.Serve(a.adminLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin listener: %w", err)
			}
		}()
		a.log.Info("admin listening", "address", a.adminLn.Addr().String())
	}
	if a.agent != nil {
		go func() {
			if err := a.agent.Serve(a.agentLn); !errors.Is(err, haproxy.ErrAgentClosed) {
				errc <- fmt.Errorf("spoe agent: %w", err)
			}
		}()
		a.log.Info("SPOE agent listening", "address", a.agentLn.Addr().String())
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	var watchers sync.WaitGroup
	for _, w := range a.watches {
		watchers.Go(func() { w.cr.Watch(wctx, w.interval) })
	}
	watchers.Go(func() {
		// Revocations past their sessions' expiry are dropped.
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case now := <-t.C:
				a.identity.revocations.Prune(now)
			}
		}
	})
	defer func() {
		stopWatch()
		watchers.Wait()
	}()
	a.ready.Store(true)
	a.metrics.Reload(true)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.ready.Store(false)
	timeout := a.rt.Load().cfg.Server.ShutdownTimeout.D()
	a.log.Info("shutting down", "drain_timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range a.servers {
		wg.Go(func() {
			if err := s.srv.Shutdown(sctx); err != nil {
				a.log.Warn("drain incomplete; closing connections", "listener", s.name, "err", err)
				s.srv.Close()
			}
		})
	}
	if a.agent != nil {
		wg.Go(func() {
			if err := a.agent.Shutdown(sctx); err != nil {
				a.log.Warn("SPOE agent drain incomplete; connections closed", "err", err)
			}
		})
	}
	wg.Wait()
	if a.admin != nil {
		a.admin.Close()
	}
	a.rt.Load().close()
	if err := a.audit.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("closing audit log: %w", err)
	}
	a.log.Info("stopped")
	return runErr
}

// Reload rereads the configuration file. A configuration that fails to
// load or build is logged with every positioned problem and the running
// one keeps serving. It also reloads TLS certificates and reopens the
// audit file (SIGHUP does all three).
func (a *App) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	for _, c := range a.certs {
		c.ReloadAndLog()
	}
	if err := a.audit.Reopen(); err != nil {
		a.log.Error("reopening audit log failed", "err", err)
	}
	if a.configPath == "" {
		return nil
	}
	cfg, err := config.Load(a.configPath)
	if err != nil {
		a.metrics.Reload(false)
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				a.log.Error("configuration error; keeping the running configuration", "error", e.Error())
			}
		} else {
			a.log.Error("configuration reload failed; keeping the running configuration", "err", err)
		}
		return err
	}
	old := a.rt.Load()
	if warn := restartOnly(old.cfg, cfg); warn != "" {
		a.log.Warn("configuration change needs a restart to take effect", "fields", warn)
	}
	rt, err := a.build(ctx, cfg)
	if err != nil {
		a.metrics.Reload(false)
		a.log.Error("configuration reload failed; keeping the running configuration", "err", err)
		return err
	}
	a.rt.Store(rt)
	a.metrics.Reload(true)
	a.log.Info("configuration reloaded", "routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams))
	// In-flight requests keep the old runtime's pools until they finish;
	// only idle connections are closed now.
	old.close()
	return nil
}

// restartOnly names the changed fields that a reload cannot apply.
func restartOnly(old, cur *config.Config) string {
	var changed []string
	if !reflect.DeepEqual(old.Listeners, cur.Listeners) {
		changed = append(changed, "listeners")
	}
	if !reflect.DeepEqual(old.Server, cur.Server) {
		changed = append(changed, "server")
	}
	if old.Admin.Address != cur.Admin.Address {
		changed = append(changed, "admin.address")
	}
	if old.SPOE != cur.SPOE {
		changed = append(changed, "spoe")
	}
	if old.Audit != cur.Audit {
		changed = append(changed, "audit")
	}
	if old.Log != cur.Log {
		changed = append(changed, "log")
	}
	if len(changed) == 0 {
		return ""
	}
	return fmt.Sprint(changed)
}

func (a *App) adminHandler() http.Handler {
	mux := http.NewServeMux()
	prom := promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{})
	mux.Handle("/metrics", a.adminAuth(prom))
	mux.Handle("/.gatehouse/status", a.adminAuth(http.HandlerFunc(a.serveStatus)))
	mux.HandleFunc("/.gatehouse/healthz", proxy.Healthz)
	mux.HandleFunc("/.gatehouse/readyz", proxy.Readyz(a.isReady))
	if a.rt.Load().cfg.Admin.Pprof {
		mux.Handle("/debug/pprof/", a.adminAuth(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/cmdline", a.adminAuth(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("/debug/pprof/profile", a.adminAuth(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", a.adminAuth(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", a.adminAuth(http.HandlerFunc(pprof.Trace)))
	}
	return mux
}

// adminAuth requires admin.token, when one is configured, as a bearer token.
func (a *App) adminAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := a.rt.Load().adminToken; !tok.IsZero() {
			got := r.Header.Get("Authorization")
			want := "Bearer " + string(tok.Reveal())
			if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse-admin"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// redirectHandler sends plain-HTTP requests to the same host and path over
// https. Only hosts some route serves are redirected, so the listener is
// not an open redirector for arbitrary Host headers.
func redirectHandler(a *App, httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := audit.FromContext(r.Context())
		rec.Route = "redirect-https"
		host, err := canon.Host(r.Host, false)
		path, perr := canon.Path(r.URL.EscapedPath())
		if err != nil || perr != nil {
			rec.Decision, rec.Reason = audit.DecisionDeny, "bad-request"
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		rec.Host, rec.Path = host, path
		bare := stripPort(host)
		if !a.rt.Load().proxy.ServesHost(host) {
			rec.Decision, rec.Reason = audit.DecisionDeny, proxy.ReasonNoRoute
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		authority := net.JoinHostPort(bare, strconv.Itoa(httpsPort))
		if httpsPort == 443 {
			authority = strings.TrimSuffix(authority, ":443")
		}
		target := "https://" + authority + path
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		rec.Decision, rec.Reason = audit.DecisionRedirect, "https-redirect"
		w.Header().Set("Cache-Control", "no-store")
		// The target is the request's own canonical host (which a route
		// serves) and path, over https: not an open redirect.
		http.Redirect(w, r, target, http.StatusPermanentRedirect) //nolint:gosec // see above
	})
}

// stripPort returns the host without port or IPv6 brackets.
func stripPort(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.Trim(h, "[]")
}
