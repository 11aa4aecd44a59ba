package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// policies builds every Balancer over p, for table tests.
func policies(t testing.TB, p *Pool) map[string]Balancer {
	t.Helper()
	h, err := NewHash(p, HashOptions{Source: HashHeader, Name: "x-user"})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]Balancer{
		"round_robin": NewWeightedRoundRobin(p),
		"least_conn":  NewLeastConn(p),
		"random_two":  NewRandomTwo(p),
		"hash":        h,
	}
}

// userRequest returns a request carrying key in the X-User header.
func userRequest(key string) *http.Request {
	return &http.Request{Header: http.Header{"X-User": {key}}}
}

// memberIndex returns m's position in its pool, which for newTestPool is
// the position of its weight.
func memberIndex(m *Member) int {
	return slices.Index(m.pool.members, m)
}

// counts picks n times, holding every request when hold is set, and
// returns the picks per member index.
func counts(t *testing.T, b Balancer, n int, hold bool) []int {
	t.Helper()
	got := make([]int, 8)
	var releases []func()
	for i := range n {
		m, release, err := b.Pick(userRequest(string(rune('a' + i%26))))
		if err != nil {
			t.Fatal(err)
		}
		got[memberIndex(m)]++
		if hold {
			releases = append(releases, release)
		} else {
			release()
		}
	}
	for _, r := range releases {
		r()
	}
	return got
}

func TestWeightedRoundRobinIsSmooth(t *testing.T) {
	p := newTestPool(t, PoolOptions{}, 5, 1, 1)
	wrr := NewWeightedRoundRobin(p)
	var order strings.Builder
	for range 14 {
		m, release, err := wrr.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		release()
		order.WriteByte("abc"[memberIndex(m)])
	}
	if got, want := order.String(), "aabacaaaabacaa"; got != want {
		t.Errorf("order %s, want %s (nginx smooth weighted round robin)", got, want)
	}
}

func TestWeightedDistribution(t *testing.T) {
	// Weights 1:2:3. Round robin honours them pick by pick; the load-aware
	// policies honour them in the load they hold, so those hold requests.
	p := newTestPool(t, PoolOptions{}, 1, 2, 3)
	tests := []struct {
		name      string
		b         Balancer
		hold      bool
		tolerance int // picks of 6000
	}{
		{"round_robin", NewWeightedRoundRobin(p), false, 0},
		{"least_conn", NewLeastConn(p), true, 1},
		{"random_two", NewRandomTwo(p), true, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := counts(t, tt.b, 6000, tt.hold)
			for i, want := range []int{1000, 2000, 3000} {
				if d := got[i] - want; d < -tt.tolerance || d > tt.tolerance {
					t.Errorf("target %d (weight %d): %d picks, want %d±%d", i, i+1, got[i], want, tt.tolerance)
				}
			}
		})
	}
}

func TestPoliciesSkipUnavailableTargets(t *testing.T) {
	clk := newFakeClock()
	p := newTestPool(t, PoolOptions{Passive: PassiveOptions{Failures: 1}, Now: clk.Now}, 1, 1, 1, 1)
	p.members[1].setActive(false, "test", 0)
	p.members[3].Report(false) // ejected
	for name, b := range policies(t, p) {
		t.Run(name, func(t *testing.T) {
			got := counts(t, b, 400, false)
			if got[1] != 0 || got[3] != 0 {
				t.Errorf("picks %v: unavailable targets 1 and 3 were picked", got[:4])
			}
			if got[0] == 0 || got[2] == 0 {
				t.Errorf("picks %v: available targets starved", got[:4])
			}
		})
	}
	p.members[0].setActive(false, "test", 0)
	p.members[2].setActive(false, "test", 0)
	for name, b := range policies(t, p) {
		t.Run(name+"/none", func(t *testing.T) {
			m, release, err := b.Pick(userRequest("k"))
			if !errors.Is(err, ErrNoTarget) || m != nil || release == nil {
				t.Fatalf("Pick = %v, %v; want ErrNoTarget and a no-op release", m, err)
			}
			release()
		})
	}
}

func TestLeastConnBreaksTiesInTurn(t *testing.T) {
	p := newTestPool(t, PoolOptions{}, 1, 1, 1)
	got := counts(t, NewLeastConn(p), 3000, false)
	for i := range 3 {
		if got[i] != 1000 {
			t.Errorf("idle targets picked %v, want 1000 each", got[:3])
			break
		}
	}
}

// TestLeastConnSpreadsSlowRequests sends slow requests to three real
// targets: they spread evenly, and once one target's requests finish, new
// requests go to it.
func TestLeastConnSpreadsSlowRequests(t *testing.T) {
	const perTarget = 10
	var targets []WeightedTarget
	var arrived [3]atomic.Int64
	var finish [3]chan struct{}
	var servers []*httptest.Server
	for i := range 3 {
		finish[i] = make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived[i].Add(1)
			select {
			case <-finish[i]:
			case <-r.Context().Done():
			}
			io.WriteString(w, "done")
		}))
		servers = append(servers, srv)
		targets = append(targets, WeightedTarget{Target: targetFor(t, srv.URL)})
	}
	defer func() {
		for i, srv := range servers {
			select {
			case <-finish[i]:
			default:
				close(finish[i])
			}
			srv.Close()
		}
	}()
	p, err := NewPool(PoolOptions{Name: "slow", Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	lc := NewLeastConn(p)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	send := func() {
		m, release, err := lc.Pick(nil)
		if err != nil {
			t.Error(err)
			return
		}
		wg.Go(func() {
			defer release()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.Target.Name+"/slow", nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	for range 3 * perTarget {
		send()
	}
	waitFor(t, ctx, func() bool { return arrived[0].Load()+arrived[1].Load()+arrived[2].Load() == 3*perTarget })
	for i := range 3 {
		if got := arrived[i].Load(); got != perTarget {
			t.Errorf("target %d has %d slow requests, want %d", i, got, perTarget)
		}
	}
	// Target 1 finishes its requests: the next ones all go to it.
	close(finish[1])
	waitFor(t, ctx, func() bool { return p.members[1].InFlight() == 0 })
	for range perTarget {
		send()
	}
	waitFor(t, ctx, func() bool { return arrived[1].Load() == 2*perTarget })
	if a, c := arrived[0].Load(), arrived[2].Load(); a != perTarget || c != perTarget {
		t.Errorf("busy targets got more requests: %d and %d, want %d", a, c, perTarget)
	}
	close(finish[0])
	close(finish[2])
	wg.Wait()
	for _, m := range p.members {
		if n := m.InFlight(); n != 0 {
			t.Errorf("%s: %d in flight after all requests ended", m.Target.Name, n)
		}
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met in time")
		case <-tick.C:
		}
	}
}

func TestRandomTwoPrefersLessLoaded(t *testing.T) {
	p := newTestPool(t, PoolOptions{}, 1, 1, 1, 1)
	rt := NewRandomTwo(p)
	// Target 0 holds 20 slow requests.
	p.members[0].inflight.Store(20)
	// Whenever target 0 is drawn, its partner is less loaded.
	got := counts(t, rt, 3000, false)
	if got[0] != 0 {
		t.Errorf("loaded target picked %d times", got[0])
	}
	for i := 1; i < 4; i++ {
		if got[i] < 800 || got[i] > 1200 {
			t.Errorf("picks %v: idle targets not spread evenly", got[:4])
			break
		}
	}
	// Held requests stay balanced: the gap is a few requests, not a
	// random walk's tens.
	p.members[0].inflight.Store(0)
	var held []func()
	for range 4000 {
		_, release, err := rt.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	lo, hi := int64(1<<62), int64(0)
	for _, m := range p.members {
		lo, hi = min(lo, m.InFlight()), max(hi, m.InFlight())
	}
	if hi-lo > 8 {
		t.Errorf("in flight ranges from %d to %d across targets", lo, hi)
	}
	for _, r := range held {
		r()
	}
}

// TestPoliciesConcurrent runs every policy from many goroutines while
// health flips, for the race detector, and checks the in-flight books
// balance.
func TestPoliciesConcurrent(t *testing.T) {
	clk := newFakeClock()
	p := newTestPool(t, PoolOptions{SlowStart: time.Second, Passive: PassiveOptions{Failures: 2, Ejection: time.Millisecond}, Now: clk.Now}, 1, 2, 3)
	var stop atomic.Bool
	var flipper sync.WaitGroup
	flipper.Go(func() {
		for i := 0; !stop.Load(); i++ {
			m := p.members[i%3]
			m.setActive(i%2 == 0, "flip", clk.Now().UnixNano())
			clk.Add(time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	for name, b := range policies(t, p) {
		for g := range 4 {
			wg.Go(func() {
				for i := range 2000 {
					m, release, err := b.Pick(userRequest(name + string(rune('a'+(i+g)%26))))
					if err != nil {
						continue // everything may be down for a moment
					}
					m.Report(i%3 != 0)
					release()
				}
			})
		}
	}
	wg.Wait()
	stop.Store(true)
	flipper.Wait()
	for _, m := range p.members {
		if n := m.InFlight(); n != 0 {
			t.Errorf("%s: %d in flight after all releases", m.Target.Name, n)
		}
	}
}
