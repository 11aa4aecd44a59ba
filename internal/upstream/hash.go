package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
)

// HashSource says where consistent hashing takes its key from.
type HashSource int

// Hash key sources.
const (
	// HashCookie hashes the value of the cookie HashOptions.Name, for
	// stickiness to a session.
	HashCookie HashSource = iota + 1
	// HashHeader hashes the first value of the header HashOptions.Name.
	HashHeader
	// HashClientIP hashes the client address HashOptions.ClientIP returns.
	HashClientIP
)

// HashOptions configures consistent hashing.
type HashOptions struct {
	// Source is where the key comes from. Required.
	Source HashSource
	// Name is the cookie or header name, for HashCookie and HashHeader.
	Name string
	// ClientIP returns the client address for HashClientIP: the caller's
	// view of it, which may come from a trusted PROXY protocol header or
	// X-Forwarded-For rather than RemoteAddr. An invalid address counts as
	// no key. IPv4 and its IPv4-mapped IPv6 form are the same key.
	ClientIP func(*http.Request) netip.Addr
	// VirtualNodes is the number of points on the ring per unit of weight.
	// More points spread keys more evenly at the cost of a larger ring
	// (memory, 16 bytes a point; lookup is a binary search). Default 256,
	// which keeps each target's share within about ±10% of its weight. The
	// ring is capped at maxRingPoints: beyond it, points per weight unit
	// are scaled down.
	VirtualNodes int
}

// Hash is consistent hashing on a ring (Karger et al., 1997, as in
// ketama and Envoy's ring hash): every member owns VirtualNodes×weight
// points placed by hashing its name, and a request goes to the owner of
// the first point at or after its key's hash. A key stays on one member
// while the pool is stable; when a member leaves or goes down, only its
// keys move (each to the next available member on the ring, about 1/N of
// all keys), and they come back when it returns. Because points depend only
// on target names, a reload that keeps a target keeps its keys.
//
// A request without a key is balanced by least_conn. While a member ramps
// up under slow start, it takes a stable, growing share of its keys: a key
// is admitted when a second hash of it falls below the ramp factor, so the
// same keys move first and stay.
type Hash struct {
	pool     *Pool
	source   HashSource
	name     string // cookie name, or canonical header key
	clientIP func(*http.Request) netip.Addr
	ring     []ringPoint // sorted by hash
	fallback LeastConn
}

// maxRingPoints caps the ring at 1 MiB.
const maxRingPoints = 1 << 16

type ringPoint struct {
	hash   uint64
	member int
}

// NewHash validates opts and returns consistent hashing over p.
func NewHash(p *Pool, opts HashOptions) (*Hash, error) {
	var errs []error
	switch opts.Source {
	case HashCookie, HashHeader:
		if opts.Name == "" {
			errs = append(errs, errors.New("hash: cookie or header name is required"))
		}
	case HashClientIP:
		if opts.ClientIP == nil {
			errs = append(errs, errors.New("hash: client IP function is required"))
		}
	default:
		errs = append(errs, fmt.Errorf("hash: unknown key source %d", opts.Source))
	}
	if opts.VirtualNodes < 0 {
		errs = append(errs, fmt.Errorf("hash: virtual nodes %d is negative", opts.VirtualNodes))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pool %s: %w", p.name, err)
	}
	vn := opts.VirtualNodes
	if vn == 0 {
		vn = 256
	}
	var weights int
	for _, m := range p.members {
		weights += int(m.weight)
	}
	vn = max(1, min(vn, maxRingPoints/weights))
	h := &Hash{pool: p, source: opts.Source, name: opts.Name, clientIP: opts.ClientIP, fallback: LeastConn{pool: p}}
	if opts.Source == HashHeader {
		h.name = textproto.CanonicalMIMEHeaderKey(opts.Name)
	}
	for i, m := range p.members {
		for v := range int(m.weight) * vn {
			h.ring = append(h.ring, ringPoint{hash: hashString(m.Target.Name + "#" + strconv.Itoa(v)), member: i})
		}
	}
	// Ties (vanishingly rare) are ordered by member so the ring does not
	// depend on configuration order.
	slices.SortFunc(h.ring, func(a, b ringPoint) int {
		if a.hash != b.hash {
			if a.hash < b.hash {
				return -1
			}
			return 1
		}
		return strings.Compare(p.members[a.member].Target.Name, p.members[b.member].Target.Name)
	})
	return h, nil
}

// Pick returns the member owning the request's key, or the next available
// one on the ring; without a key it falls back to least_conn.
func (h *Hash) Pick(r *http.Request) (*Member, func(), error) {
	kh, ok := h.key(r)
	if !ok {
		return h.fallback.Pick(r)
	}
	return h.pickKey(kh)
}

// pickKey walks the ring from the point of the key whose hash is kh to the
// first member that is available (and, while it ramps up, admits this key).
func (h *Hash) pickKey(kh uint64) (*Member, func(), error) {
	ring := h.ring
	n := len(ring)
	// Binary search for the first point >= kh, by hand: sort.Search's
	// closure would escape.
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ring[mid].hash < kh {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	c := h.pool.clock()
	members := h.pool.members
	last, lastOK := -1, false
	for k := range n {
		i := lo + k
		if i >= n {
			i -= n
		}
		mi := ring[i].member
		if mi == last {
			if lastOK {
				return members[mi].acquire()
			}
			continue
		}
		m := members[mi]
		last = mi
		ew := m.effective(&c)
		lastOK = ew > 0
		if lastOK && ew < m.weight*fullWeight {
			// Slow start: admit a stable share of this member's keys.
			lastOK = int64(mix64(kh^m.seed)%1000) < ew/m.weight
		}
		if lastOK {
			return m.acquire()
		}
	}
	return nil, noRelease, ErrNoTarget
}

// key returns the hash of the request's key without allocating, and
// whether it has one.
func (h *Hash) key(r *http.Request) (uint64, bool) {
	var k string
	switch h.source {
	case HashCookie:
		k = cookieValue(r.Header, h.name)
	case HashHeader:
		if vs := r.Header[h.name]; len(vs) > 0 {
			k = vs[0]
		}
	case HashClientIP:
		ip := h.clientIP(r)
		if !ip.IsValid() {
			return 0, false
		}
		a := ip.Unmap().As16()
		return hashString(a[:]), true
	}
	return hashString(k), k != ""
}

// cookieValue returns the value of the first cookie called name, without
// the allocations of http.Request.Cookie (which parses every cookie). A
// quoted value is unquoted (RFC 6265 section 4.1.1). HTTP/2 may send
// cookies as several header lines (RFC 9113 section 8.2.3); all are
// searched.
func cookieValue(hdr http.Header, name string) string {
	for _, line := range hdr["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			n, v, ok := strings.Cut(part, "=")
			if !ok || n != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// hashString is 64-bit FNV-1a with a splitmix64 finalizer: FNV alone
// leaves similar keys ("user1", "user2") close together on the ring.
func hashString[S string | []byte](s S) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return mix64(h)
}

// mix64 is the splitmix64 finalizer (Steele et al., "Fast splittable
// pseudorandom number generators", 2014).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
