package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds a pool's members and their health state. The selection
// policies (pick.go, hash.go), the active checker (health.go) and the
// connection limiter (limit.go) all work on it; Upstream (upstream.go)
// builds them from its Options.
//
// Hot-path rule: everything a policy reads per request is an atomic word on
// the Member, and the clock is read only while some member is ejected or
// ramping up, so a pool in the steady state costs a few atomic loads per
// pick and allocates nothing.

// Balancer chooses a pool member for a request and counts the request as in
// flight on it until release is called. Implementations are safe for
// concurrent use and allocate nothing per call.
//
// The proxy uses it as
//
//	m, release, err := b.Pick(r)
//	if err != nil { ... } // ErrNoTarget: 503 with Retry-After
//	defer release()       // once the response body is done, not at headers
//
// release is never nil (a no-op on error) and must be called exactly once:
// calling it twice corrupts the in-flight count that least_conn and
// random_two balance on.
type Balancer interface {
	Pick(r *http.Request) (m *Member, release func(), err error)
}

// MaxWeight is the largest weight a target may have. It keeps the weight
// arithmetic of every policy well inside int64.
const MaxWeight = 1000

// WeightedTarget is a target and its share of the traffic.
type WeightedTarget struct {
	Target *Target
	// Weight is the target's share relative to the others, 1 to MaxWeight.
	// Default 1.
	Weight int
}

// PassiveOptions configures passive health checks: watching real traffic
// for failures, as HAProxy's observe and Envoy's outlier detection do.
type PassiveOptions struct {
	// Failures is how many consecutive failed requests (as reported through
	// Member.Report: connection failures, timeouts, 5xx) eject a target.
	// 0 disables passive checks.
	Failures int
	// Ejection is how long the first ejection lasts; each further ejection
	// without a success in between doubles it, up to MaxEjection. Default
	// 10s.
	Ejection time.Duration
	// MaxEjection caps the ejection period. Default 5m.
	MaxEjection time.Duration
}

// PoolOptions configures a Pool.
type PoolOptions struct {
	// Name is the pool's name from the configuration, for errors.
	Name string
	// Targets are the pool's members. At least one; names must be unique.
	Targets []WeightedTarget
	// SlowStart is how long a target that just became healthy (its active
	// check rose, or its passive ejection ended) takes to ramp its
	// effective weight from 10% to 100%. 0 disables slow start. Every
	// policy honours it; consistent hashing admits a growing, stable share
	// of the target's keys.
	SlowStart time.Duration
	// Passive configures passive health checks.
	Passive PassiveOptions
	// MaxConns limits the requests one target is sent at a time; 0 means
	// no limit. See Limiter.
	MaxConns int
	// MaxQueue bounds the requests waiting for one target once MaxConns is
	// reached; beyond it Limiter.Acquire fails with ErrQueueFull at once.
	// 0 means no waiting. Ignored without MaxConns.
	MaxQueue int
	// StartDown makes members start as down for active checks, so a target
	// takes traffic only after Rise passing checks. Default: members start
	// up (HAProxy's default), which suits a reload or a pool without
	// active checks.
	StartDown bool
	// Previous, if set, is the pool this one replaces on a reload: members
	// with the same target name inherit its active, passive and slow-start
	// state, so a reload neither resurrects a dead target nor restarts a
	// ramp. In-flight counts are not carried over: those requests release
	// on the old pool.
	Previous *Pool
	// Now is the clock. Default time.Now. Tests inject one.
	Now func() time.Time
	// OnTransition, if set, is told every health transition (for logs and
	// metrics). It is called synchronously, sometimes on the request path
	// and while a policy holds its lock, so it must be quick and must not
	// call back into the pool.
	OnTransition func(Transition)
}

// Transition is a change in a target's health.
type Transition struct {
	Pool   string
	Target string
	// Check is "active" (the Checker) or "passive" (ejection by traffic).
	Check string
	// Up is the new state of that check.
	Up bool
	// Reason says why, for the operator: "3 consecutive failures: status
	// 503", "ejection ended".
	Reason string
	At     time.Time
}

// Pool is a set of members with shared health settings. The selection
// policies are built on a Pool; several may share one, and share its
// health and in-flight state.
type Pool struct {
	name      string
	members   []*Member
	now       func() time.Time
	slowStart int64 // nanoseconds; 0 disables
	passive   PassiveOptions
	notify    func(Transition)
}

// Member is one target of a pool with its selection and health state.
// Everything read per request is atomic.
type Member struct {
	// Target is the instance this member sends to.
	Target *Target

	pool    *Pool
	weight  int64 // configured weight, 1..MaxWeight
	seed    uint64
	limiter *Limiter
	release func() // prebuilt so Pick does not allocate a closure

	inflight     atomic.Int64
	activeDown   atomic.Bool
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when not ejected
	rampFrom     atomic.Int64 // unix nanoseconds slow start began; 0 when not ramping
	fails        atomic.Int32 // consecutive failures seen by passive checks
	ejections    atomic.Int32 // consecutive ejections, for the backoff

	check checkState // active check bookkeeping, off the hot path
}

// checkState is what the active checker remembers of a member.
type checkState struct {
	mu       sync.Mutex // guards the fields below
	okRun    int        // consecutive passing checks
	failRun  int        // consecutive failing checks
	last     time.Time
	status   int
	err      string
	duration time.Duration
}

// NewPool validates opts and builds a Pool.
func NewPool(opts PoolOptions) (*Pool, error) {
	var errs []error
	if len(opts.Targets) == 0 {
		errs = append(errs, errors.New("no targets"))
	}
	if opts.SlowStart < 0 {
		errs = append(errs, fmt.Errorf("slow_start %s is negative", opts.SlowStart))
	}
	if opts.MaxConns < 0 || opts.MaxQueue < 0 {
		errs = append(errs, errors.New("max_conns and max_queue must not be negative"))
	}
	pa := opts.Passive
	if pa.Failures < 0 || pa.Ejection < 0 || pa.MaxEjection < 0 {
		errs = append(errs, errors.New("passive check settings must not be negative"))
	}
	if pa.Ejection == 0 {
		pa.Ejection = 10 * time.Second
	}
	if pa.MaxEjection == 0 {
		pa.MaxEjection = 5 * time.Minute
	}
	if pa.MaxEjection < pa.Ejection {
		pa.MaxEjection = pa.Ejection
	}
	p := &Pool{
		name:      opts.Name,
		now:       opts.Now,
		slowStart: int64(opts.SlowStart),
		passive:   pa,
		notify:    opts.OnTransition,
	}
	if p.now == nil {
		p.now = time.Now
	}
	seen := map[string]bool{}
	for i, wt := range opts.Targets {
		if wt.Target == nil {
			errs = append(errs, fmt.Errorf("target %d: missing", i))
			continue
		}
		if seen[wt.Target.Name] {
			errs = append(errs, fmt.Errorf("target %s: listed twice", wt.Target.Name))
		}
		seen[wt.Target.Name] = true
		w := wt.Weight
		if w == 0 {
			w = 1
		}
		if w < 1 || w > MaxWeight {
			errs = append(errs, fmt.Errorf("target %s: weight %d out of range 1..%d", wt.Target.Name, wt.Weight, MaxWeight))
		}
		m := &Member{Target: wt.Target, pool: p, weight: int64(w), seed: hashString(wt.Target.Name)}
		m.release = m.done
		if opts.MaxConns > 0 {
			m.limiter = NewLimiter(opts.MaxConns, opts.MaxQueue)
		}
		m.activeDown.Store(opts.StartDown)
		p.members = append(p.members, m)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pool %s: %w", opts.Name, err)
	}
	if opts.Previous != nil {
		p.inherit(opts.Previous)
	}
	return p, nil
}

// inherit copies health state from the members of old with the same
// target names.
func (p *Pool) inherit(old *Pool) {
	byName := make(map[string]*Member, len(old.members))
	for _, m := range old.members {
		byName[m.Target.Name] = m
	}
	for _, m := range p.members {
		o := byName[m.Target.Name]
		if o == nil {
			continue
		}
		m.activeDown.Store(o.activeDown.Load())
		m.ejectedUntil.Store(o.ejectedUntil.Load())
		if p.slowStart > 0 {
			m.rampFrom.Store(o.rampFrom.Load())
		}
		m.fails.Store(o.fails.Load())
		m.ejections.Store(o.ejections.Load())
		o.check.mu.Lock()
		okRun, failRun := o.check.okRun, o.check.failRun
		last, status, err, d := o.check.last, o.check.status, o.check.err, o.check.duration
		o.check.mu.Unlock()
		m.check.okRun, m.check.failRun = okRun, failRun
		m.check.last, m.check.status, m.check.err, m.check.duration = last, status, err, d
	}
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Members returns the pool's members in configuration order. The slice
// must not be modified.
func (p *Pool) Members() []*Member { return p.members }

// noRelease is the release func returned with an error.
var noRelease = func() {}

// acquire counts a request in flight on m and returns its release func.
func (m *Member) acquire() (*Member, func(), error) {
	m.inflight.Add(1)
	return m, m.release, nil
}

// done is the release func: the request no longer counts against m.
func (m *Member) done() { m.inflight.Add(-1) }

// InFlight reports the requests picked for m and not yet released.
func (m *Member) InFlight() int64 { return m.inflight.Load() }

// Weight returns the configured weight.
func (m *Member) Weight() int { return int(m.weight) }

// Limiter returns the member's connection limiter, nil without a limit.
// Limiter's methods accept a nil receiver, so callers need not check.
func (m *Member) Limiter() *Limiter { return m.limiter }

// clock reads the pool's clock at most once per pick, and only if a member
// needs it (one ejected or ramping up).
type clock struct {
	now func() time.Time
	t   int64
	ok  bool
}

func (p *Pool) clock() clock { return clock{now: p.now} }

func (c *clock) get() int64 {
	if !c.ok {
		c.t, c.ok = c.now().UnixNano(), true
	}
	return c.t
}

// fullWeight is the effective weight of a member of weight 1 at full
// strength: effective weights are in thousandths so slow start can scale
// them in integers.
const fullWeight = 1000

// effective returns m's effective weight for a new request now: 0 when m
// is down or ejected, weight×1000 at full strength, less while slow start
// ramps. It may end an expired ejection or ramp, so it can notify.
func (m *Member) effective(c *clock) int64 {
	if m.activeDown.Load() {
		return 0
	}
	if until := m.ejectedUntil.Load(); until != 0 {
		if c.get() < until {
			return 0
		}
		if m.ejectedUntil.CompareAndSwap(until, 0) {
			m.pool.transition(m, "passive", true, "ejection ended", c.get())
		}
	}
	w := m.weight * fullWeight
	from := m.rampFrom.Load()
	if from == 0 {
		return w
	}
	elapsed := c.get() - from
	ss := m.pool.slowStart
	if ss == 0 || elapsed >= ss {
		m.rampFrom.CompareAndSwap(from, 0)
		return w
	}
	return w * rampPermille(elapsed, ss) / 1000
}

// rampPermille is the slow-start factor in thousandths: 100 (10%) at the
// start, rising linearly to 1000 at the end of the slow start period.
func rampPermille(elapsed, period int64) int64 {
	if elapsed <= 0 {
		return 100
	}
	return 100 + 900*elapsed/period
}

// Available reports whether m may be picked now: its active check is up
// and it is not ejected.
func (m *Member) Available() bool {
	c := m.pool.clock()
	return m.effective(&c) > 0
}

// Report feeds a request's outcome to the passive health check. ok is
// false for a connection failure, a timeout or a 5xx response; the caller
// must not report a request the client abandoned (that says nothing about
// the target). PassiveOptions.Failures consecutive failures eject m for the
// backoff period; the first success after an ejection ended resets the
// backoff. Report costs an atomic load when m is healthy and passive
// checks are on, nothing when they are off.
func (m *Member) Report(ok bool) {
	pa := &m.pool.passive
	if pa.Failures <= 0 {
		return
	}
	if ok {
		if m.fails.Load() != 0 {
			m.fails.Store(0)
		}
		if m.ejections.Load() != 0 && m.ejectedUntil.Load() == 0 {
			m.ejections.Store(0)
		}
		return
	}
	if m.ejectedUntil.Load() != 0 {
		// Requests that were in flight when m was ejected, or the first
		// trial after the ejection ended before a pick noticed: count
		// them only once the ejection is over.
		c := m.pool.clock()
		if m.effective(&c) == 0 {
			return
		}
	}
	if n := m.fails.Add(1); int(n) != pa.Failures {
		return
	}
	m.fails.Store(0)
	k := m.ejections.Add(1)
	d := pa.Ejection
	for i := int32(1); i < k && d < pa.MaxEjection; i++ {
		d *= 2
	}
	d = min(d, pa.MaxEjection)
	now := m.pool.now().UnixNano()
	until := now + int64(d)
	m.ejectedUntil.Store(until)
	if m.pool.slowStart > 0 {
		m.rampFrom.Store(until)
	}
	m.pool.transition(m, "passive", false, fmt.Sprintf("%d consecutive failures; ejected for %s", pa.Failures, d), now)
}

// setActive records an active check result crossing rise or fall.
func (m *Member) setActive(up bool, reason string, now int64) {
	if m.activeDown.Load() == !up {
		return
	}
	if up && m.pool.slowStart > 0 {
		m.rampFrom.Store(now)
	}
	m.activeDown.Store(!up)
	m.pool.transition(m, "active", up, reason, now)
}

func (p *Pool) transition(m *Member, check string, up bool, reason string, now int64) {
	if p.notify == nil {
		return
	}
	p.notify(Transition{Pool: p.name, Target: m.Target.Name, Check: check, Up: up, Reason: reason, At: time.Unix(0, now)})
}

// Health is a snapshot of a member's state, for the status page and
// metrics.
type Health struct {
	Target string
	Weight int
	// Available is whether new requests may be sent to the target now.
	Available bool
	// ActiveUp is the state of the active check (true without one).
	ActiveUp bool
	// EjectedUntil is when a passive ejection ends; zero when not ejected.
	EjectedUntil time.Time
	// SlowStartPermille is the share of its weight the target gets now,
	// in thousandths; 1000 when not ramping up.
	SlowStartPermille int
	InFlight          int64
	// ConsecutiveFailures is the passive check's current failure run.
	ConsecutiveFailures int
	// LastCheck, LastStatus, LastError and LastDuration describe the
	// latest active check; LastCheck is zero before the first one.
	LastCheck    time.Time
	LastStatus   int
	LastError    string
	LastDuration time.Duration
}

// Health returns a snapshot of m's state.
func (m *Member) Health() Health {
	c := m.pool.clock()
	eff := m.effective(&c)
	h := Health{
		Target:              m.Target.Name,
		Weight:              int(m.weight),
		Available:           eff > 0,
		ActiveUp:            !m.activeDown.Load(),
		InFlight:            m.inflight.Load(),
		ConsecutiveFailures: int(m.fails.Load()),
		SlowStartPermille:   1000,
	}
	if u := m.ejectedUntil.Load(); u != 0 {
		h.EjectedUntil = time.Unix(0, u)
	}
	if eff > 0 {
		h.SlowStartPermille = int(eff / m.weight)
	}
	m.check.mu.Lock()
	h.LastCheck, h.LastStatus, h.LastError, h.LastDuration = m.check.last, m.check.status, m.check.err, m.check.duration
	m.check.mu.Unlock()
	return h
}

// Health returns a snapshot of every member, in configuration order.
func (p *Pool) Health() []Health {
	hs := make([]Health, len(p.members))
	for i, m := range p.members {
		hs[i] = m.Health()
	}
	return hs
}
