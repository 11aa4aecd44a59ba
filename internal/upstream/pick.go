package upstream

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
)

// This file holds the load-aware and weighted selection policies. Each is
// a Balancer over a Pool; consistent hashing is in hash.go. All of them skip
// members that are down or ejected, scale weights by slow start, and return
// ErrNoTarget when no member is available.

// WeightedRoundRobin is smooth weighted round robin, nginx's algorithm
// (nginx commit 52327e0627f4): each pick adds every available member's
// effective weight to its running score, takes the highest score and
// subtracts the total from it. Weights 5,1,1 give a a b a c a a rather than
// a a a a a b c, and the order stays exact while weights change under slow
// start.
//
// The scores are guarded by a mutex; the critical section is a pass over
// the members, a few nanoseconds each.
type WeightedRoundRobin struct {
	pool *Pool

	mu      sync.Mutex // guards current
	current []int64    // running score per member
}

// NewWeightedRoundRobin returns smooth weighted round robin over p.
func NewWeightedRoundRobin(p *Pool) *WeightedRoundRobin {
	return &WeightedRoundRobin{pool: p, current: make([]int64, len(p.members))}
}

// Pick returns the member with the highest running score.
func (w *WeightedRoundRobin) Pick(*http.Request) (*Member, func(), error) {
	c := w.pool.clock()
	w.mu.Lock()
	best, total := -1, int64(0)
	for i, m := range w.pool.members {
		ew := m.effective(&c)
		if ew == 0 {
			continue
		}
		w.current[i] += ew
		total += ew
		if best < 0 || w.current[i] > w.current[best] {
			best = i
		}
	}
	if best < 0 {
		w.mu.Unlock()
		return nil, noRelease, ErrNoTarget
	}
	w.current[best] -= total
	w.mu.Unlock()
	return w.pool.members[best].acquire()
}

// LeastConn picks the member with the fewest in-flight requests relative
// to its effective weight: the lowest (in-flight+1)/weight, HAProxy's
// leastconn. It is the right policy for Metabase, whose requests range from
// milliseconds to a 20-minute query. Ties are broken fairly: the scan
// starts one member further on each pick, so idle members are used in
// turn. In-flight counts include requests waiting in a member's Limiter
// queue, so a saturated member is avoided.
//
// Pick is lock-free: two concurrent picks may read the same counts and
// choose the same member, a transient skew of one request (Envoy accepts
// the same).
type LeastConn struct {
	pool *Pool
	next atomic.Uint64
}

// NewLeastConn returns least_conn over p.
func NewLeastConn(p *Pool) *LeastConn { return &LeastConn{pool: p} }

// Pick returns the least loaded available member.
func (l *LeastConn) Pick(*http.Request) (*Member, func(), error) {
	c := l.pool.clock()
	members := l.pool.members
	n := uint64(len(members))
	start := (l.next.Add(1) - 1) % n
	var best *Member
	var bestLoad, bestW int64
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		m := members[i]
		ew := m.effective(&c)
		if ew == 0 {
			continue
		}
		load := m.inflight.Load() + 1
		if best == nil || less(load, ew, bestLoad, bestW) {
			best, bestLoad, bestW = m, load, ew
		}
	}
	if best == nil {
		return nil, noRelease, ErrNoTarget
	}
	return best.acquire()
}

// less reports whether load a over weight aw is below load b over weight
// bw, without division. Loads and weights are bounded (weights by
// MaxWeight×1000), so the products stay far inside int64.
func less(a, aw, b, bw int64) bool { return a*bw < b*aw }

// RandomTwo is the power of two choices (Mitzenmacher, "The Power of Two
// Choices in Randomized Load Balancing", 2001): it samples two distinct
// available members at random and takes the one with the lower
// (in-flight+1)/weight. Nearly as even as least_conn, with no scan over
// the pool and no herd behaviour when several proxies share stale counts.
// It falls back to a least_conn scan when sampling keeps hitting
// unavailable members.
type RandomTwo struct {
	pool     *Pool
	fallback LeastConn
}

// NewRandomTwo returns random_two over p.
func NewRandomTwo(p *Pool) *RandomTwo {
	return &RandomTwo{pool: p, fallback: LeastConn{pool: p}}
}

// randomTwoTries is how many random pairs Pick draws before scanning.
const randomTwoTries = 3

// Pick returns the less loaded of two random available members.
func (rt *RandomTwo) Pick(r *http.Request) (*Member, func(), error) {
	members := rt.pool.members
	n := len(members)
	if n < 2 {
		return rt.fallback.Pick(r)
	}
	c := rt.pool.clock()
	for range randomTwoTries {
		// Load balancing needs no unpredictability: math/rand/v2's
		// top-level functions are lock-free and do not allocate.
		i := rand.IntN(n)     //nolint:gosec // not security sensitive
		j := rand.IntN(n - 1) //nolint:gosec // not security sensitive
		if j >= i {
			j++
		}
		a, b := members[i], members[j]
		aw, bw := a.effective(&c), b.effective(&c)
		switch {
		case aw == 0 && bw == 0:
			continue
		case aw == 0:
			return b.acquire()
		case bw == 0:
			return a.acquire()
		}
		if less(b.inflight.Load()+1, bw, a.inflight.Load()+1, aw) {
			return b.acquire()
		}
		return a.acquire()
	}
	return rt.fallback.Pick(r)
}
