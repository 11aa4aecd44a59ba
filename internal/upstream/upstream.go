// Package upstream holds the applications gatehouse forwards to: each
// Upstream is an http.RoundTripper over a Pool of targets. A Balancer
// (round robin, least_conn, random_two, consistent hashing) picks a target
// that health checks have not taken out; the request goes over a keep-alive
// pool tuned for high concurrency and is retried on another target when
// that is safe.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"
)

// Target is one instance of an application.
type Target struct {
	// Name is scheme://host:port, used in audit records and metrics.
	Name   string
	scheme string
	host   string // host:port, as in url.URL.Host
}

// ErrNoTarget is returned when no target can take the request.
var ErrNoTarget = errors.New("no upstream target available")

// Options configures an Upstream.
type Options struct {
	// Name is the upstream's name from the configuration.
	Name string
	// Targets are base URLs: scheme and host[:port], no path.
	Targets []*url.URL
	// Weights are the targets' shares, in the same order (1 to
	// MaxWeight); nil means 1 each.
	Weights []int
	// DialTimeout bounds connecting to a target. Default 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds waiting for response headers once the
	// request is written. 0 means no limit.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes idle pooled connections. Default 90s.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerTarget sizes the keep-alive pool per target. Default 512.
	MaxIdleConnsPerTarget int
	// TLSConfig is used for https targets; nil means system roots.
	TLSConfig *tls.Config
	// Observe, if set, is told the target and time to response headers of
	// every successful round trip (for metrics and the audit record).
	Observe func(req *http.Request, target string, d time.Duration)

	// Balance chooses the target: "round_robin" (weighted, smooth),
	// "least_conn", "random_two" or "hash". Default round_robin.
	Balance string
	// Hash configures Balance "hash".
	Hash HashOptions
	// SlowStart ramps a target that just came (back) up from 10 % to its
	// full weight over this long. 0 disables it.
	SlowStart time.Duration
	// Passive ejects a target after consecutive failures (connection
	// errors, timeouts, 5xx answers). Zero Failures disables it.
	Passive PassiveOptions
	// MaxConnsPerTarget caps the requests in flight to one target; more
	// wait in a queue of MaxQueue, beyond which they fail with
	// ErrQueueFull (503). 0 means no cap.
	MaxConnsPerTarget int
	MaxQueue          int
	// HealthCheck, when set, runs active checks from New until Close. Its
	// Client may be left nil: a client with the upstream's TLS settings
	// that does not follow redirects is used.
	HealthCheck *CheckOptions
	// Previous is the upstream this one replaces on a reload: the health
	// state of targets both have carries over.
	Previous *Upstream
	// OnTransition is told every health change of a target.
	OnTransition func(Transition)
	// Retries is how many other targets a failed request may be tried
	// on: always after a connection failure, and after other failures
	// before any response byte only for idempotent requests without a
	// body. Retries are also capped by a budget of a fifth of the recent
	// requests (at least 3 per 10 s), so an outage cannot multiply the
	// load. Default 0 (no retries).
	Retries int
}

// Upstream is an application: its targets, how one is chosen, and the
// connection pool to them. It implements http.RoundTripper.
type Upstream struct {
	name      string
	targets   []*Target
	pool      *Pool
	balancer  Balancer
	transport *http.Transport // https targets
	h1        *h1Transport    // http targets
	observe   func(req *http.Request, target string, d time.Duration)
	stop      context.CancelFunc // stops the active health checks
	retries   int
	budget    retryBudget
}

// New validates opts and builds an Upstream with round-robin selection.
func New(opts Options) (*Upstream, error) {
	if len(opts.Targets) == 0 {
		return nil, fmt.Errorf("upstream %s: no targets", opts.Name)
	}
	u := &Upstream{name: opts.Name, observe: opts.Observe, retries: opts.Retries}
	for _, t := range opts.Targets {
		if t.Scheme != "http" && t.Scheme != "https" {
			return nil, fmt.Errorf("upstream %s: target %s: unsupported scheme", opts.Name, t.Redacted())
		}
		host := t.Host
		if t.Port() == "" {
			port := "80"
			if t.Scheme == "https" {
				port = "443"
			}
			host = net.JoinHostPort(t.Hostname(), port)
		}
		u.targets = append(u.targets, &Target{Name: t.Scheme + "://" + host, scheme: t.Scheme, host: host})
	}
	opts = opts.withDefaults()
	u.transport = newTransport(opts)
	u.h1 = newH1Transport(opts)
	po := PoolOptions{
		Name:         opts.Name,
		SlowStart:    opts.SlowStart,
		Passive:      opts.Passive,
		MaxConns:     opts.MaxConnsPerTarget,
		MaxQueue:     opts.MaxQueue,
		OnTransition: opts.OnTransition,
	}
	if opts.Weights != nil && len(opts.Weights) != len(u.targets) {
		return nil, fmt.Errorf("upstream %s: %d weights for %d targets", opts.Name, len(opts.Weights), len(u.targets))
	}
	for i, t := range u.targets {
		w := 1
		if opts.Weights != nil {
			w = opts.Weights[i]
		}
		po.Targets = append(po.Targets, WeightedTarget{Target: t, Weight: w})
	}
	if opts.Previous != nil {
		po.Previous = opts.Previous.pool
	}
	pool, err := NewPool(po)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", opts.Name, err)
	}
	u.pool = pool
	switch opts.Balance {
	case "", "round_robin":
		u.balancer = NewWeightedRoundRobin(pool)
	case "least_conn":
		u.balancer = NewLeastConn(pool)
	case "random_two":
		u.balancer = NewRandomTwo(pool)
	case "hash":
		h, err := NewHash(pool, opts.Hash)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", opts.Name, err)
		}
		u.balancer = h
	default:
		return nil, fmt.Errorf("upstream %s: unknown balance %q", opts.Name, opts.Balance)
	}
	if hc := opts.HealthCheck; hc != nil {
		co := *hc
		if co.Client == nil {
			co.Client = &http.Client{
				Transport:     u.transport,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
		}
		checker, err := NewChecker(pool, co)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: health check: %w", opts.Name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		u.stop = cancel
		go checker.Run(ctx)
	}
	return u, nil
}

// Pool returns the upstream's pool, for health reporting.
func (u *Upstream) Pool() *Pool { return u.pool }

// withDefaults fills in the documented defaults, once, for both transports.
func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.MaxIdleConnsPerTarget <= 0 {
		o.MaxIdleConnsPerTarget = 512
	}
	return o
}

// Name returns the upstream's configured name.
func (u *Upstream) Name() string { return u.name }

// newTransport returns the http.Transport for https targets, tuned for a
// reverse proxy: a large keep-alive pool so load does not churn
// connections, no transparent compression (the client's Accept-Encoding
// passes through untouched), and explicit dial and header timeouts. opts
// has its defaults applied.
func newTransport(opts Options) *http.Transport {
	d := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil, // never use HTTP_PROXY from the environment for upstreams
		DialContext:           d.DialContext,
		TLSClientConfig:       opts.TLSConfig,
		TLSHandshakeTimeout:   opts.DialTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          opts.MaxIdleConnsPerTarget * max(1, len(opts.Targets)),
		MaxIdleConnsPerHost:   opts.MaxIdleConnsPerTarget,
		IdleConnTimeout:       opts.IdleConnTimeout,
		ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}

// TargetError is a failed round trip to a specific target.
type TargetError struct {
	Target *Target
	Err    error
}

func (e *TargetError) Error() string {
	return "upstream target " + e.Target.Name + ": " + e.Err.Error()
}
func (e *TargetError) Unwrap() error { return e.Err }

// RoundTrip picks a target, points req at it and sends it. The request
// must be one the caller owns (httputil.ReverseProxy's outbound request):
// its URL scheme and host are overwritten. Errors are *TargetError when a
// target was chosen.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if u.retries > 0 {
		u.budget.request()
	}
	var failed [4]*Member // targets already tried, for retries
	tried := failed[:0]
	for attempt := 0; ; attempt++ {
		m, release, err := u.pickExcept(req, tried)
		if err != nil {
			return nil, err
		}
		resp, err := u.try(req, m, release)
		if err == nil {
			return resp, nil
		}
		if attempt >= u.retries || !retryable(req, err) || req.Context().Err() != nil || !u.budget.retry() {
			return nil, err
		}
		if len(tried) < cap(tried) {
			tried = append(tried, m)
		}
	}
}

// pickExcept picks a member that is not in tried, giving up after a few
// picks (the balancer may keep choosing a failed target that is not yet
// ejected).
func (u *Upstream) pickExcept(req *http.Request, tried []*Member) (*Member, func(), error) {
	for i := 0; ; i++ {
		m, release, err := u.balancer.Pick(req)
		if err != nil || i == 3 || !slices.Contains(tried, m) {
			return m, release, err
		}
		release()
	}
}

// retryable reports whether a failed round trip may be sent to another
// target: after a connection failure always (nothing was sent), otherwise
// only an idempotent request without a body, which failed before any
// response byte (RoundTrip's errors all do).
func retryable(req *http.Request, err error) bool {
	hasBody := req.Body != nil && req.Body != http.NoBody
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || errors.Is(err, ErrQueueFull) {
		// Nothing was sent. The plain-HTTP transport leaves an unsent body
		// unread; net/http's (https targets) closes it on any error.
		return !hasBody || req.URL.Scheme == "http"
	}
	if hasBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

// try sends req to m.
func (u *Upstream) try(req *http.Request, m *Member, release func()) (*http.Response, error) {
	var err error
	t := m.Target
	lim := m.Limiter()
	if lim != nil {
		if err := lim.Acquire(req.Context()); err != nil {
			release()
			return nil, &TargetError{Target: t, Err: err}
		}
	}
	req.URL.Scheme = t.scheme
	req.URL.Host = t.host
	start := time.Now()
	var resp *http.Response
	if t.scheme == "http" {
		resp, err = u.h1.RoundTrip(req)
	} else {
		resp, err = u.transport.RoundTrip(req)
	}
	if err != nil {
		release()
		if lim != nil {
			lim.Release()
		}
		if req.Context().Err() == nil {
			m.Report(false) // the client going away is not the target's fault
		}
		return nil, &TargetError{Target: t, Err: err}
	}
	m.Report(resp.StatusCode < 500)
	if u.observe != nil {
		u.observe(req, t.Name, time.Since(start))
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The body is the connection itself, which ReverseProxy needs to
		// see as an io.ReadWriteCloser: count the request done now.
		release()
		if lim != nil {
			lim.Release()
		}
		return resp, nil
	}
	// The request stays in flight (for least_conn and the connection cap)
	// until its body is done: a streamed response counts as long as it
	// streams.
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release, lim: lim}
	return resp, nil
}

// retryBudget caps retries at a fifth of the recent requests, with a
// floor of 3 per window of 10 s (Envoy's and Finagle's retry budgets,
// simplified): during an outage every request may fail, but retries add at
// most 20 % to the load. Counting a request is one atomic add; the window
// moves on only when a retry is asked for, so the hot path reads no clock.
// The counts are approximate under races, which a budget tolerates.
type retryBudget struct {
	start    atomic.Int64 // the window's start, Unix nanoseconds; 0 before the first retry
	requests atomic.Int64
	retries  atomic.Int64
}

const (
	retryWindow  = 10 * time.Second
	retryRatio   = 5 // one retry per five requests
	retryMinimum = 3
)

func (b *retryBudget) request() { b.requests.Add(1) }

// retry takes one retry from the budget, or reports false.
func (b *retryBudget) retry() bool {
	now := time.Now().UnixNano()
	switch start := b.start.Load(); {
	case start == 0:
		b.start.CompareAndSwap(0, now)
	case now-start > int64(retryWindow) && b.start.CompareAndSwap(start, now):
		b.requests.Store(0)
		b.retries.Store(0)
	}
	if b.retries.Add(1) > max(retryMinimum, b.requests.Load()/retryRatio) {
		b.retries.Add(-1)
		return false
	}
	return true
}

// releasingBody ends a request's in-flight accounting when its response
// body is closed.
type releasingBody struct {
	io.ReadCloser
	release func()
	lim     *Limiter
	done    atomic.Bool
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	if b.done.CompareAndSwap(false, true) {
		b.release()
		if b.lim != nil {
			b.lim.Release()
		}
	}
	return err
}

// CloseIdle closes idle pooled connections (after a reload retires this
// upstream).
func (u *Upstream) CloseIdle() {
	u.transport.CloseIdleConnections()
	u.h1.CloseIdleConnections()
}

// Close stops the active health checks and closes idle connections.
func (u *Upstream) Close() {
	if u.stop != nil {
		u.stop()
	}
	u.CloseIdle()
}

// Reason codes Classify returns for the audit record.
const (
	ReasonClientGone  = "client-gone"          // the client went away (499); same code as audit's
	ReasonNoTarget    = "no-target"            // no target could take the request (503)
	ReasonQueueFull   = "queue-full"           // every connection and queue slot of the target is taken (503)
	ReasonUnreachable = "upstream-unreachable" // dialing the target failed (502)
	ReasonTimeout     = "upstream-timeout"     // the target did not answer in time (504)
	ReasonError       = "upstream-error"       // any other failure (502)
)

// Classify maps a round-trip error to the status a client should get and a
// reason code for the audit record: a dial failure is 502
// upstream-unreachable, a timeout 504 upstream-timeout, a client that went
// away 499 client-gone, anything else 502 upstream-error.
func Classify(ctx context.Context, err error) (status int, reason string) {
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		return 499, ReasonClientGone
	}
	if errors.Is(err, ErrNoTarget) {
		return http.StatusServiceUnavailable, ReasonNoTarget
	}
	if errors.Is(err, ErrQueueFull) {
		return http.StatusServiceUnavailable, ReasonQueueFull
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return http.StatusBadGateway, ReasonUnreachable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout, ReasonTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout, ReasonTimeout
	}
	return http.StatusBadGateway, ReasonError
}
