package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// CheckOptions configures active health checks. The defaults suit
// Metabase, whose GET /api/health answers 200 when ready and 503 while it
// starts or migrates.
type CheckOptions struct {
	// Method is the check's HTTP method. Default GET.
	Method string
	// Path is the request path, with any query. Default "/".
	Path string
	// Status is the status a healthy target answers; anything else,
	// including a redirect, fails the check. Default 200.
	Status int
	// Interval is the time between the starts of two rounds of checks.
	// Default 10s.
	Interval time.Duration
	// Timeout bounds one check, connection included; a check that times
	// out fails. Default 2s; at most Interval.
	Timeout time.Duration
	// Rise is how many consecutive passing checks bring a down target up.
	// Default 2.
	Rise int
	// Fall is how many consecutive failing checks take an up target down.
	// Default 3.
	Fall int
	// Client sends the checks. Required. It should not follow redirects
	// (a redirect to a login page is not health) and should use the same
	// TLS settings as the proxy's transport for https targets.
	Client *http.Client
	// Tick returns a channel that delivers a value every d, and a function
	// that stops it. Default time.NewTicker. Tests inject a channel they
	// feed by hand.
	Tick func(d time.Duration) (<-chan time.Time, func())
}

// Checker runs active HTTP health checks on every member of a pool: each
// round checks all members concurrently, and a member goes down after Fall
// consecutive failures and comes back up after Rise consecutive passes
// (HAProxy's fall and rise). Transitions go to the pool's OnTransition and
// are readable through Member.Health.
type Checker struct {
	pool *Pool
	opts CheckOptions
}

// NewChecker validates opts and returns a checker for p. It does nothing
// until Run or Round is called.
func NewChecker(p *Pool, opts CheckOptions) (*Checker, error) {
	if opts.Method == "" {
		opts.Method = http.MethodGet
	}
	if opts.Path == "" {
		opts.Path = "/"
	}
	if opts.Status == 0 {
		opts.Status = http.StatusOK
	}
	if opts.Interval == 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.Timeout == 0 {
		opts.Timeout = min(2*time.Second, opts.Interval)
	}
	if opts.Rise == 0 {
		opts.Rise = 2
	}
	if opts.Fall == 0 {
		opts.Fall = 3
	}
	if opts.Tick == nil {
		opts.Tick = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	var errs []error
	if !strings.HasPrefix(opts.Path, "/") {
		errs = append(errs, fmt.Errorf("health check: path %q must start with /", opts.Path))
	}
	if opts.Status < 100 || opts.Status > 599 {
		errs = append(errs, fmt.Errorf("health check: status %d is not an HTTP status", opts.Status))
	}
	if opts.Interval < 0 || opts.Timeout < 0 {
		errs = append(errs, errors.New("health check: interval and timeout must be positive"))
	}
	if opts.Timeout > opts.Interval {
		errs = append(errs, fmt.Errorf("health check: timeout %s exceeds interval %s", opts.Timeout, opts.Interval))
	}
	if opts.Rise < 0 || opts.Fall < 0 {
		errs = append(errs, errors.New("health check: rise and fall must be positive"))
	}
	if opts.Client == nil {
		errs = append(errs, errors.New("health check: no HTTP client"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pool %s: %w", p.name, err)
	}
	return &Checker{pool: p, opts: opts}, nil
}

// Run checks every member at once, then once per Interval, until ctx ends.
// It returns after the checks in progress have finished; a check cut short
// by ctx is not counted.
func (c *Checker) Run(ctx context.Context) {
	tick, stop := c.opts.Tick(c.opts.Interval)
	defer stop()
	for {
		c.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// Round checks every member once, concurrently, and returns when all
// checks are done.
func (c *Checker) Round(ctx context.Context) {
	var wg sync.WaitGroup
	for _, m := range c.pool.members {
		wg.Go(func() { c.check(ctx, m) })
	}
	wg.Wait()
}

// check probes m once and applies rise and fall.
func (c *Checker) check(ctx context.Context, m *Member) {
	start := c.pool.now()
	status, err := c.probe(ctx, m)
	end := c.pool.now()
	if ctx.Err() != nil {
		return
	}
	ok := err == nil && status == c.opts.Status
	why := ""
	switch {
	case err != nil:
		why = err.Error()
	case !ok:
		why = fmt.Sprintf("status %d, want %d", status, c.opts.Status)
	}

	m.check.mu.Lock()
	m.check.last, m.check.status, m.check.err, m.check.duration = end, status, why, end.Sub(start)
	if ok {
		m.check.okRun++
		m.check.failRun = 0
	} else {
		m.check.failRun++
		m.check.okRun = 0
	}
	okRun, failRun := m.check.okRun, m.check.failRun
	// The transition is applied under the lock so two overlapping
	// rounds cannot report it out of order.
	down := m.activeDown.Load()
	switch {
	case down && okRun >= c.opts.Rise:
		m.setActive(true, fmt.Sprintf("%d consecutive passing checks", okRun), end.UnixNano())
	case !down && failRun >= c.opts.Fall:
		m.setActive(false, fmt.Sprintf("%d consecutive failing checks: %s", failRun, why), end.UnixNano())
	}
	m.check.mu.Unlock()
}

// probe sends one check request to m and returns the response status.
func (c *Checker) probe(ctx context.Context, m *Member) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.opts.Method, m.Target.scheme+"://"+m.Target.host+c.opts.Path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "gatehouse-health-check")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return 0, err
	}
	// Drain a little so the connection can be reused; a health body is
	// small, and a large one is not worth reading.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
