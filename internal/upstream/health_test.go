package upstream

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// metabaseHealth is a stand-in for Metabase's GET /api/health: it answers
// the status the test sets (503 while "starting").
type metabaseHealth struct {
	status atomic.Int64
	checks atomic.Int64
	srv    *httptest.Server
}

func newMetabaseHealth(t *testing.T) *metabaseHealth {
	t.Helper()
	mh := &metabaseHealth{}
	mh.status.Store(http.StatusOK)
	mh.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/api/health" || r.Header.Get("User-Agent") != "gatehouse-health-check" {
			http.Error(w, "unexpected check "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		mh.checks.Add(1)
		w.WriteHeader(int(mh.status.Load()))
		w.Write([]byte(`{"status":"ok"}`))
	}))
	t.Cleanup(mh.srv.Close)
	return mh
}

func checkClient(t *testing.T) *http.Client {
	c := &http.Client{
		Transport:     &http.Transport{},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestCheckerFallsAndRises(t *testing.T) {
	mh := newMetabaseHealth(t)
	clk := newFakeClock()
	var tr transitions
	p, err := NewPool(PoolOptions{
		Name:         "metabase",
		Targets:      []WeightedTarget{{Target: targetFor(t, mh.srv.URL)}},
		Now:          clk.Now,
		OnTransition: tr.record,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewChecker(p, CheckOptions{Path: "/api/health", Rise: 2, Fall: 3, Client: checkClient(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := p.members[0]
	ctx := context.Background()

	steps := []struct {
		status int
		up     bool
	}{
		{200, true},
		{503, true}, // Metabase restarting: 1 of 3
		{503, true}, // 2 of 3
		{503, false},
		{503, false},
		{200, false}, // 1 of 2
		{503, false}, // the run starts over
		{200, false},
		{200, true},
	}
	for i, s := range steps {
		mh.status.Store(int64(s.status))
		clk.Add(time.Second)
		c.Round(ctx)
		h := m.Health()
		if h.ActiveUp != s.up || h.Available != s.up {
			t.Fatalf("step %d (status %d): up=%t available=%t, want %t", i, s.status, h.ActiveUp, h.Available, s.up)
		}
		if h.LastStatus != s.status || !h.LastCheck.Equal(clk.Now()) {
			t.Fatalf("step %d: last check %d at %s", i, h.LastStatus, h.LastCheck)
		}
	}
	want := []string{
		"active down: 3 consecutive failing checks: status 503, want 200",
		"active up: 2 consecutive passing checks",
	}
	if got := tr.take(); !slices.Equal(got, want) {
		t.Errorf("transitions %q, want %q", got, want)
	}
	if h := m.Health(); h.LastError != "" {
		t.Errorf("last error %q after a passing check", h.LastError)
	}
}

func TestCheckerFailsUnreachableAndSlowTargets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := &Target{Name: "http://" + ln.Addr().String(), scheme: "http", host: ln.Addr().String()}
	ln.Close()
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(hang)
	p, err := NewPool(PoolOptions{Targets: []WeightedTarget{{Target: refused}, {Target: targetFor(t, slow.URL)}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewChecker(p, CheckOptions{Fall: 1, Timeout: 50 * time.Millisecond, Client: checkClient(t)})
	if err != nil {
		t.Fatal(err)
	}
	c.Round(context.Background())
	for i, want := range []string{"connection refused", "deadline exceeded"} {
		h := p.members[i].Health()
		if h.ActiveUp || !strings.Contains(h.LastError, want) {
			t.Errorf("%s: up=%t error %q, want down with %q", h.Target, h.ActiveUp, h.LastError, want)
		}
	}
}

// TestCheckerRunStopsWithContext drives Run with a hand-fed ticker.
func TestCheckerRunStopsWithContext(t *testing.T) {
	mh := newMetabaseHealth(t)
	mh.status.Store(http.StatusServiceUnavailable)
	events := make(chan Transition, 10)
	p, err := NewPool(PoolOptions{
		Targets:      []WeightedTarget{{Target: targetFor(t, mh.srv.URL)}},
		StartDown:    true,
		OnTransition: func(tr Transition) { events <- tr },
	})
	if err != nil {
		t.Fatal(err)
	}
	tick := make(chan time.Time)
	stopped := make(chan struct{})
	c, err := NewChecker(p, CheckOptions{
		Path: "/api/health", Rise: 1, Fall: 1, Interval: time.Hour, Client: checkClient(t),
		Tick: func(d time.Duration) (<-chan time.Time, func()) {
			if d != time.Hour {
				t.Errorf("ticker interval %s, want 1h", d)
			}
			return tick, func() { close(stopped) }
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	timeout := time.After(10 * time.Second)
	// The first round runs at once; the target is still starting.
	tick <- time.Time{} // accepted only once the first round is over
	if n := mh.checks.Load(); n < 1 {
		t.Fatalf("%d checks before the first tick", n)
	}
	mh.status.Store(http.StatusOK)
	tick <- time.Time{} // the second round starts
	select {
	case tr := <-events:
		if !tr.Up || tr.Check != "active" || tr.Pool != "" || tr.Target != p.members[0].Target.Name {
			t.Errorf("transition %+v", tr)
		}
	case <-timeout:
		t.Fatal("no transition after the target became healthy")
	}
	cancel()
	select {
	case <-done:
	case <-timeout:
		t.Fatal("Run did not return after cancel")
	}
	select {
	case <-stopped:
	default:
		t.Error("ticker not stopped")
	}
}

func TestNewCheckerValidation(t *testing.T) {
	p := newTestPool(t, PoolOptions{Name: "p"}, 1)
	client := http.DefaultClient
	tests := []struct {
		name string
		opts CheckOptions
		want string
	}{
		{"no client", CheckOptions{}, "no HTTP client"},
		{"relative path", CheckOptions{Client: client, Path: "api/health"}, "must start with /"},
		{"bad status", CheckOptions{Client: client, Status: 42}, "not an HTTP status"},
		{"timeout over interval", CheckOptions{Client: client, Interval: time.Second, Timeout: 2 * time.Second}, "exceeds interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewChecker(p, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	c, err := NewChecker(p, CheckOptions{Client: client, Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c.opts.Timeout != time.Second || c.opts.Rise != 2 || c.opts.Fall != 3 || c.opts.Method != http.MethodGet || c.opts.Status != 200 {
		t.Errorf("defaults %+v", c.opts)
	}
}
