package app

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/metrics"
)

// targetStates reports every upstream target of the current runtime, for
// the metrics collector.
func (a *App) targetStates() []metrics.TargetState {
	var out []metrics.TargetState
	for _, u := range a.rt.Load().upstreams {
		for _, h := range u.Pool().Health() {
			out = append(out, metrics.TargetState{Upstream: u.Name(), Target: h.Target, Up: h.Available, InFlight: h.InFlight})
		}
	}
	return out
}

// targetStatus is one target on the status page.
type targetStatus struct {
	Target              string     `json:"target"`
	Available           bool       `json:"available"`
	ActiveCheckUp       bool       `json:"active_check_up"`
	EjectedUntil        *time.Time `json:"ejected_until,omitempty"`
	SlowStartPercent    float64    `json:"slow_start_percent"`
	InFlight            int64      `json:"in_flight"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	LastCheck           *time.Time `json:"last_check,omitempty"`
	LastStatus          int        `json:"last_status,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	LastCheckMillis     float64    `json:"last_check_ms,omitempty"`
}

// serveStatus is /.gatehouse/status on the admin listener: each upstream's
// targets with their health, as JSON.
func (a *App) serveStatus(w http.ResponseWriter, r *http.Request) {
	rt := a.rt.Load()
	ups := map[string][]targetStatus{}
	for _, u := range rt.upstreams {
		list := []targetStatus{}
		for _, h := range u.Pool().Health() {
			ts := targetStatus{
				Target: h.Target, Available: h.Available, ActiveCheckUp: h.ActiveUp,
				SlowStartPercent: float64(h.SlowStartPermille) / 10, InFlight: h.InFlight,
				ConsecutiveFailures: h.ConsecutiveFailures, LastStatus: h.LastStatus, LastError: h.LastError,
			}
			if !h.EjectedUntil.IsZero() {
				t := h.EjectedUntil.UTC()
				ts.EjectedUntil = &t
			}
			if !h.LastCheck.IsZero() {
				t := h.LastCheck.UTC()
				ts.LastCheck = &t
				ts.LastCheckMillis = float64(h.LastDuration.Microseconds()) / 1000
			}
			list = append(list, ts)
		}
		ups[u.Name()] = list
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(map[string]any{"upstreams": ups})
}
