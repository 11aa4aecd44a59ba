// Package upstream holds the applications gatehouse forwards to: each
// Upstream is an http.RoundTripper that picks one of its targets through a
// Picker and sends the request over a keep-alive pool tuned for high
// concurrency. Selection sits behind the Picker interface so load-balancing
// policies, health checks and retries can replace round robin without the
// proxy noticing.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
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

// Picker chooses the target for a request. Implementations must be safe for
// concurrent use and should not allocate.
type Picker interface {
	Pick(r *http.Request) (*Target, error)
}

// ErrNoTarget is returned when no target can take the request.
var ErrNoTarget = errors.New("no upstream target available")

// RoundRobin cycles through targets in order.
type RoundRobin struct {
	targets []*Target
	next    atomic.Uint64
}

// Pick returns the next target in turn.
func (rr *RoundRobin) Pick(*http.Request) (*Target, error) {
	if len(rr.targets) == 0 {
		return nil, ErrNoTarget
	}
	n := rr.next.Add(1) - 1
	return rr.targets[n%uint64(len(rr.targets))], nil
}

// Options configures an Upstream.
type Options struct {
	// Name is the upstream's name from the configuration.
	Name string
	// Targets are base URLs: scheme and host[:port], no path.
	Targets []*url.URL
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
}

// Upstream is an application: its targets, how one is chosen, and the
// connection pool to them. It implements http.RoundTripper.
type Upstream struct {
	name      string
	targets   []*Target
	picker    Picker
	transport *http.Transport // https targets
	h1        *h1Transport    // http targets
	observe   func(req *http.Request, target string, d time.Duration)
}

// New validates opts and builds an Upstream with round-robin selection.
func New(opts Options) (*Upstream, error) {
	if len(opts.Targets) == 0 {
		return nil, fmt.Errorf("upstream %s: no targets", opts.Name)
	}
	u := &Upstream{name: opts.Name, observe: opts.Observe}
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
	u.picker = &RoundRobin{targets: u.targets}
	opts = opts.withDefaults()
	u.transport = newTransport(opts)
	u.h1 = newH1Transport(opts)
	return u, nil
}

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
	t, err := u.picker.Pick(req)
	if err != nil {
		return nil, err
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
		return nil, &TargetError{Target: t, Err: err}
	}
	if u.observe != nil {
		u.observe(req, t.Name, time.Since(start))
	}
	return resp, nil
}

// CloseIdle closes idle pooled connections (after a reload retires this
// upstream).
func (u *Upstream) CloseIdle() {
	u.transport.CloseIdleConnections()
	u.h1.CloseIdleConnections()
}

// Reason codes Classify returns for the audit record.
const (
	ReasonClientGone  = "client-gone"          // the client went away (499); same code as audit's
	ReasonNoTarget    = "no-target"            // no target could take the request (503)
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
