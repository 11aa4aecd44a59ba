// Package metrics defines gatehouse's Prometheus metrics. They live for the
// whole process (across configuration reloads) on their own registry, which
// is served only on the admin listener.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector gatehouse exports.
type Metrics struct {
	// Registry is what /metrics serves.
	Registry *prometheus.Registry

	requests        *prometheus.CounterVec
	upstreamLatency *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	reloads         *prometheus.CounterVec
	configLoaded    prometheus.Gauge
	spoeVerdicts    *prometheus.HistogramVec

	mu     sync.RWMutex // guards cache
	cache  map[reqKey]prometheus.Counter
	hmu    sync.RWMutex // guards hcache
	hcache map[[2]string]prometheus.Observer
}

type reqKey struct {
	route, decision string
	status          int
}

// New registers gatehouse's collectors, plus the Go runtime and process
// collectors, on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_requests_total",
			Help: "Requests handled, by route, status code and decision.",
		}, []string{"route", "status", "decision"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_upstream_response_seconds",
			Help:    "Time from sending a request upstream to its response headers, by route and upstream.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "upstream"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_requests_in_flight",
			Help: "Requests being handled right now.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_config_reloads_total",
			Help: "Configuration reloads, by result (success or failure).",
		}, []string{"result"}),
		configLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration in force was loaded.",
		}),
		spoeVerdicts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_spoe_verdict_seconds",
			Help:    "Time the SPOE agent took to decide a verdict, by decision (allow, deny, redirect, error); the count is the number of verdicts.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5},
		}, []string{"decision"}),
		cache:  map[reqKey]prometheus.Counter{},
		hcache: map[[2]string]prometheus.Observer{},
	}
	reg.MustRegister(m.requests, m.upstreamLatency, m.inFlight, m.reloads, m.configLoaded, m.spoeVerdicts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Request counts one finished request. The labelled counter is cached so
// the steady state costs a read-locked map lookup and an atomic add.
func (m *Metrics) Request(route string, status int, decision string) {
	k := reqKey{route, decision, status}
	m.mu.RLock()
	c, ok := m.cache[k]
	m.mu.RUnlock()
	if !ok {
		c = m.requests.WithLabelValues(route, strconv.Itoa(status), decision)
		m.mu.Lock()
		m.cache[k] = c
		m.mu.Unlock()
	}
	c.Inc()
}

// SPOEVerdicts returns the hook that records the SPOE agent's verdicts,
// for a process that runs the agent: the observers of the four decisions
// are made here, once (so /metrics shows the series only where there is
// an agent, and a verdict costs no map or lock).
func (m *Metrics) SPOEVerdicts() func(decision string, d time.Duration) {
	by := map[string]prometheus.Observer{}
	for _, d := range []string{"allow", "deny", "redirect", "error"} {
		by[d] = m.spoeVerdicts.WithLabelValues(d)
	}
	return func(decision string, d time.Duration) {
		o, ok := by[decision]
		if !ok {
			o = m.spoeVerdicts.WithLabelValues(decision)
		}
		o.Observe(d.Seconds())
	}
}

// UpstreamLatency records the time to an upstream's response headers.
func (m *Metrics) UpstreamLatency(route, upstream string, d time.Duration) {
	k := [2]string{route, upstream}
	m.hmu.RLock()
	o, ok := m.hcache[k]
	m.hmu.RUnlock()
	if !ok {
		o = m.upstreamLatency.WithLabelValues(route, upstream)
		m.hmu.Lock()
		m.hcache[k] = o
		m.hmu.Unlock()
	}
	o.Observe(d.Seconds())
}

// InFlight returns the in-flight gauge.
func (m *Metrics) InFlight() prometheus.Gauge { return m.inFlight }

// Reload counts a configuration reload.
func (m *Metrics) Reload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("success").Inc()
		m.configLoaded.SetToCurrentTime()
		return
	}
	m.reloads.WithLabelValues("failure").Inc()
}

// TargetState is one upstream target's health, as the targets collector
// reports it.
type TargetState struct {
	Upstream, Target string
	// Up is whether new requests may go to the target now (healthy, not
	// ejected).
	Up       bool
	InFlight int64
}

// targetsCollector reads the targets' state at scrape time, so health
// costs nothing per request.
type targetsCollector struct {
	states   func() []TargetState
	up       *prometheus.Desc
	inFlight *prometheus.Desc
}

func (c *targetsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.inFlight
}

func (c *targetsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.states() {
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, s.Upstream, s.Target)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(s.InFlight), s.Upstream, s.Target)
	}
}

// WatchTargets registers gauges of every upstream target's health and
// in-flight requests, read from states at each scrape. Call it once.
func (m *Metrics) WatchTargets(states func() []TargetState) {
	m.Registry.MustRegister(&targetsCollector{
		states: states,
		up: prometheus.NewDesc("gatehouse_upstream_target_up",
			"Whether an upstream target takes new requests (1) or is down or ejected (0).", []string{"upstream", "target"}, nil),
		inFlight: prometheus.NewDesc("gatehouse_upstream_target_in_flight",
			"Requests in flight to an upstream target, streamed responses included.", []string{"upstream", "target"}, nil),
	})
}
