package upstream

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// benchPolicies returns the policies the benchmarks and the allocation
// test measure, over a three-target pool with passive checks on, and the
// request they pick for (it carries every key source).
func benchPolicies(tb testing.TB, opts PoolOptions) (map[string]Balancer, *http.Request, *Pool) {
	tb.Helper()
	opts.Passive = PassiveOptions{Failures: 5}
	p := newTestPool(tb, opts, 1, 2, 3)
	req := &http.Request{Header: http.Header{
		"Cookie":      {"theme=dark; metabase.SESSION=0b6a1f4e-2c1d-4a8e-9d55-1c2b3a4d5e6f; lang=en"},
		"X-User":      {"alice@example.com"},
		"X-Client-Ip": {"192.0.2.10"},
	}}
	newHash := func(o HashOptions) Balancer {
		h, err := NewHash(p, o)
		if err != nil {
			tb.Fatal(err)
		}
		return h
	}
	clientIP := func(r *http.Request) netip.Addr {
		if v := r.Header["X-Client-Ip"]; len(v) > 0 {
			ip, _ := netip.ParseAddr(v[0])
			return ip
		}
		return netip.Addr{}
	}
	return map[string]Balancer{
		"round_robin":    NewWeightedRoundRobin(p),
		"least_conn":     NewLeastConn(p),
		"random_two":     NewRandomTwo(p),
		"hash_cookie":    newHash(HashOptions{Source: HashCookie, Name: "metabase.SESSION"}),
		"hash_header":    newHash(HashOptions{Source: HashHeader, Name: "X-User"}),
		"hash_client_ip": newHash(HashOptions{Source: HashClientIP, ClientIP: clientIP}),
		"hash_no_key":    newHash(HashOptions{Source: HashHeader, Name: "X-Absent"}),
	}, req, p
}

// TestPickDoesNotAllocate holds the hot path to zero allocations: pick,
// report and release for every policy, in the steady state and while a
// member ramps up and another is ejected (the clock path), and the
// connection limiter's fast path.
func TestPickDoesNotAllocate(t *testing.T) {
	clk := newFakeClock()
	policies, req, p := benchPolicies(t, PoolOptions{SlowStart: time.Minute, Now: clk.Now, MaxConns: 10, MaxQueue: 10})
	for _, state := range []string{"steady", "ramping and ejected"} {
		if state != "steady" {
			p.members[0].setActive(false, "test", 0)
			p.members[0].setActive(true, "test", clk.Now().UnixNano())
			for range 5 {
				p.members[1].Report(false)
			}
			clk.Add(time.Second)
		}
		for name, b := range policies {
			t.Run(state+"/"+name, func(t *testing.T) {
				allocs := testing.AllocsPerRun(1000, func() {
					m, release, err := b.Pick(req)
					if err != nil {
						t.Fatal(err)
					}
					if err := m.Limiter().Acquire(context.Background()); err != nil {
						t.Fatal(err)
					}
					m.Report(true)
					m.Limiter().Release()
					release()
				})
				if allocs != 0 {
					t.Errorf("%v allocations per pick and release, want 0", allocs)
				}
			})
		}
	}
}

// BenchmarkPick measures pick plus release per policy over three targets.
func BenchmarkPick(b *testing.B) {
	policies, req, _ := benchPolicies(b, PoolOptions{})
	for _, name := range []string{"round_robin", "least_conn", "random_two", "hash_cookie", "hash_header", "hash_client_ip", "hash_no_key"} {
		pol := policies[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, release, err := pol.Pick(req)
				if err != nil {
					b.Fatal(err)
				}
				release()
			}
		})
	}
}

// BenchmarkPickParallel measures contention: every policy from GOMAXPROCS
// goroutines at once.
func BenchmarkPickParallel(b *testing.B) {
	policies, req, _ := benchPolicies(b, PoolOptions{})
	for _, name := range []string{"round_robin", "least_conn", "random_two", "hash_cookie"} {
		pol := policies[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m, release, err := pol.Pick(req)
					if err != nil {
						b.Error(err)
						return
					}
					m.Report(true)
					release()
				}
			})
		})
	}
}
