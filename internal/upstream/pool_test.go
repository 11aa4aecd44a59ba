package upstream

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for slow start and ejection.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testTarget returns a target for an address that is never dialed.
func testTarget(i int) *Target {
	host := fmt.Sprintf("10.0.0.%d:80", i+1)
	return &Target{Name: "http://" + host, scheme: "http", host: host}
}

// targetFor returns the target for an httptest server's URL.
func targetFor(t *testing.T, rawURL string) *Target {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return &Target{Name: u.Scheme + "://" + u.Host, scheme: u.Scheme, host: u.Host}
}

// newTestPool builds a pool of len(weights) unreachable targets.
func newTestPool(t testing.TB, opts PoolOptions, weights ...int) *Pool {
	t.Helper()
	for i, w := range weights {
		opts.Targets = append(opts.Targets, WeightedTarget{Target: testTarget(i), Weight: w})
	}
	p, err := NewPool(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// transitions records OnTransition calls.
type transitions struct {
	mu   sync.Mutex // guards list
	list []Transition
}

func (tr *transitions) record(t Transition) {
	tr.mu.Lock()
	tr.list = append(tr.list, t)
	tr.mu.Unlock()
}

func (tr *transitions) take() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, t := range tr.list {
		state := "down"
		if t.Up {
			state = "up"
		}
		out = append(out, t.Check+" "+state+": "+t.Reason)
	}
	tr.list = nil
	return out
}

func TestNewPoolValidation(t *testing.T) {
	tests := []struct {
		name string
		opts PoolOptions
		want []string
	}{
		{"no targets", PoolOptions{Name: "p"}, []string{"no targets"}},
		{"duplicate and bad weight", PoolOptions{Name: "p", Targets: []WeightedTarget{
			{Target: testTarget(0)}, {Target: testTarget(0), Weight: MaxWeight + 1},
		}}, []string{"listed twice", "weight 1001 out of range"}},
		{"negatives", PoolOptions{Name: "p", Targets: []WeightedTarget{{Target: testTarget(0), Weight: -1}},
			SlowStart: -time.Second, MaxConns: -1, Passive: PassiveOptions{Failures: -1}},
			[]string{"slow_start -1s is negative", "max_conns", "passive check", "weight -1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPool(tt.opts)
			if err == nil {
				t.Fatal("NewPool succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestPassiveEjectionBacksOff(t *testing.T) {
	clk := newFakeClock()
	var tr transitions
	p := newTestPool(t, PoolOptions{
		Name:         "p",
		Passive:      PassiveOptions{Failures: 3, Ejection: 10 * time.Second, MaxEjection: 30 * time.Second},
		Now:          clk.Now,
		OnTransition: tr.record,
	}, 1, 1)
	m := p.members[0]
	lc := NewLeastConn(p)
	req := &http.Request{Header: http.Header{}}

	eject := func() {
		t.Helper()
		m.Report(false)
		m.Report(false)
		if !m.Available() {
			t.Fatal("ejected after 2 of 3 failures")
		}
		m.Report(false)
		if m.Available() {
			t.Fatal("not ejected after 3 failures")
		}
	}
	for round, want := range []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 30 * time.Second} {
		eject()
		if got := m.Health().EjectedUntil.Sub(clk.Now()); got != want {
			t.Fatalf("ejection %d lasts %s, want %s", round+1, got, want)
		}
		for range 10 {
			got, release, err := lc.Pick(req)
			if err != nil || got == m {
				t.Fatalf("picked %v, %v while ejected", got, err)
			}
			release()
		}
		// Failures of requests still in flight do not extend the ejection.
		m.Report(false)
		clk.Add(want - time.Nanosecond)
		if m.Available() {
			t.Fatal("ejection ended early")
		}
		clk.Add(time.Nanosecond)
		if !m.Available() {
			t.Fatal("ejection did not end")
		}
	}
	// A success after the ejection ended resets the backoff.
	m.Report(true)
	eject()
	if got := m.Health().EjectedUntil.Sub(clk.Now()); got != 10*time.Second {
		t.Fatalf("after a success, ejection lasts %s, want 10s", got)
	}
	got := tr.take()
	if len(got) != 9 || got[0] != "passive down: 3 consecutive failures; ejected for 10s" || got[1] != "passive up: ejection ended" {
		t.Errorf("transitions = %q", got)
	}
}

func TestPassiveSuccessResetsFailureRun(t *testing.T) {
	p := newTestPool(t, PoolOptions{Passive: PassiveOptions{Failures: 2}}, 1)
	m := p.members[0]
	for range 10 {
		m.Report(false)
		m.Report(true)
	}
	if !m.Available() {
		t.Fatal("ejected by failures that were not consecutive")
	}
	// Passive checks off: failures are ignored.
	p = newTestPool(t, PoolOptions{}, 1)
	for range 100 {
		p.members[0].Report(false)
	}
	if !p.members[0].Available() {
		t.Fatal("ejected with passive checks off")
	}
}

func TestSlowStartRampsWeight(t *testing.T) {
	clk := newFakeClock()
	p := newTestPool(t, PoolOptions{SlowStart: 100 * time.Second, Now: clk.Now}, 1, 1, 1)
	m := p.members[2]
	m.setActive(false, "test", clk.Now().UnixNano())
	m.setActive(true, "test", clk.Now().UnixNano())
	wrr := NewWeightedRoundRobin(p)
	req := &http.Request{}

	// share picks the ramping member's share of a full smooth round robin
	// cycle (sum of effective weights, in thousandths).
	share := func() (got, total int) {
		c := p.clock()
		for _, m := range p.members {
			total += int(m.effective(&c))
		}
		for range total {
			pm, release, err := wrr.Pick(req)
			if err != nil {
				t.Fatal(err)
			}
			release()
			if pm == m {
				got++
			}
		}
		return got, total
	}
	tests := []struct {
		at       time.Duration
		permille int
	}{{0, 100}, {25 * time.Second, 325}, {50 * time.Second, 550}, {99 * time.Second, 991}, {100 * time.Second, 1000}, {200 * time.Second, 1000}}
	var elapsed time.Duration
	for _, tt := range tests {
		clk.Add(tt.at - elapsed)
		elapsed = tt.at
		if got := m.Health().SlowStartPermille; got != tt.permille {
			t.Errorf("at %s: permille %d, want %d", tt.at, got, tt.permille)
		}
		got, total := share()
		if got != tt.permille {
			t.Errorf("at %s: %d of %d picks, want %d", tt.at, got, total, tt.permille)
		}
	}
	if m.rampFrom.Load() != 0 {
		t.Error("ramp not cleared after slow start ended")
	}
}

func TestSlowStartAfterEjection(t *testing.T) {
	clk := newFakeClock()
	p := newTestPool(t, PoolOptions{SlowStart: 10 * time.Second, Passive: PassiveOptions{Failures: 1, Ejection: 5 * time.Second}, Now: clk.Now}, 1)
	m := p.members[0]
	m.Report(false)
	clk.Add(5 * time.Second)
	if got := m.Health().SlowStartPermille; got != 100 {
		t.Errorf("just after ejection: permille %d, want 100", got)
	}
	clk.Add(5 * time.Second)
	if got := m.Health().SlowStartPermille; got != 550 {
		t.Errorf("halfway: permille %d, want 550", got)
	}
}

func TestStartDownAndReloadInheritsState(t *testing.T) {
	clk := newFakeClock()
	old := newTestPool(t, PoolOptions{StartDown: true, Passive: PassiveOptions{Failures: 1}, Now: clk.Now}, 1, 1, 1)
	for _, m := range old.members {
		if m.Available() {
			t.Fatalf("%s available before its first check", m.Target.Name)
		}
	}
	old.members[0].setActive(true, "test", clk.Now().UnixNano())
	old.members[1].setActive(true, "test", clk.Now().UnixNano())
	old.members[1].Report(false) // ejected

	// The reload keeps targets 0 and 1 and adds target 3 (StartDown off).
	p, err := NewPool(PoolOptions{Targets: []WeightedTarget{
		{Target: testTarget(1)}, {Target: testTarget(0)}, {Target: testTarget(3)},
	}, Passive: PassiveOptions{Failures: 1}, Now: clk.Now, Previous: old})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range p.Health() {
		got = append(got, fmt.Sprintf("%s available=%t ejected=%t", h.Target, h.Available, !h.EjectedUntil.IsZero()))
	}
	want := []string{
		"http://10.0.0.2:80 available=false ejected=true",
		"http://10.0.0.1:80 available=true ejected=false",
		"http://10.0.0.4:80 available=true ejected=false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("after reload:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
