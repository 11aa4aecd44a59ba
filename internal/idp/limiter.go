package idp

import (
	"container/list"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// LimiterOptions configures a Limiter. Zero fields take the defaults shown.
type LimiterOptions struct {
	// PerUser is how many failed logins one username may have per Window
	// (default 5). It stops credential stuffing and guessing against one
	// account from many addresses.
	PerUser int
	// PerIP is how many failed logins one client may have per Window
	// (default 20). A client is an IPv4 address or an IPv6 /64, since one
	// host usually holds a whole /64. It stops password spraying: one
	// address trying a common password against many usernames.
	PerIP int
	// Window is how long failures count (default 15m). A counter's window
	// starts with its first attempt and the counter resets when it ends.
	Window time.Duration
	// MaxEntries bounds memory: the most usernames and clients tracked at
	// once (default 100000). Entries whose window has ended are dropped
	// first. When every entry is still within its window, the limiter fails
	// closed: an attempt that needs a new entry is refused until the oldest
	// window ends. An attacker able to cause MaxEntries failures per Window
	// (say from many IPv6 /64s) can therefore block logins for users and
	// clients not already tracked; size it well above normal traffic.
	MaxEntries int
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
}

// Limiter limits failed logins per username and per client. It is safe
// for concurrent use.
//
// Every Allow that returns ok reserves an attempt, and must be followed by
// exactly one Failure or Success for the same username and address. The
// reservation counts against the limits until then, so a burst of parallel
// attempts cannot all pass Allow before the first failure is recorded.
// (A reservation that is never settled expires with its window.)
type Limiter struct {
	perUser, perIP int
	window         time.Duration
	maxEntries     int
	now            func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // key → element of order holding *limitEntry; guarded by mu
	order   *list.List               // *limitEntry by window start, oldest first; guarded by mu
}

type limitEntry struct {
	key      string
	start    time.Time // start of the window
	failures int       // failures recorded in this window
	pending  int       // attempts allowed but not yet settled
}

// NewLimiter returns a Limiter, or an error for negative options.
func NewLimiter(opts LimiterOptions) (*Limiter, error) {
	if opts.PerUser < 0 || opts.PerIP < 0 || opts.Window < 0 || opts.MaxEntries < 0 {
		return nil, fmt.Errorf("login limiter: negative option in %+v", LimiterOptions{PerUser: opts.PerUser, PerIP: opts.PerIP, Window: opts.Window, MaxEntries: opts.MaxEntries})
	}
	l := &Limiter{
		perUser:    opts.PerUser,
		perIP:      opts.PerIP,
		window:     opts.Window,
		maxEntries: opts.MaxEntries,
		now:        opts.Now,
		entries:    map[string]*list.Element{},
		order:      list.New(),
	}
	if l.perUser == 0 {
		l.perUser = 5
	}
	if l.perIP == 0 {
		l.perIP = 20
	}
	if l.window == 0 {
		l.window = 15 * time.Minute
	}
	if l.maxEntries == 0 {
		l.maxEntries = 100000
	}
	if l.maxEntries < 2 {
		l.maxEntries = 2 // one attempt needs a user and a client entry
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

// maxUserKey bounds the username part of a key; no valid username is
// longer, so truncating only merges names that cannot log in anyway.
const maxUserKey = 65

func userKey(user string) string {
	if len(user) > maxUserKey {
		user = user[:maxUserKey]
	}
	return "u:" + foldUsername(user)
}

// ipKey groups IPv6 clients by /64. IPv4-mapped IPv6 addresses count as
// IPv4. The zero Addr is one client of its own.
func ipKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + ip.WithZone("").String()
}

// Allow reports whether a login attempt for user from ip may go ahead, and
// if not, how long until it may. Call it before checking the password; if
// it returns ok, call Failure or Success afterwards.
func (l *Limiter) Allow(user string, ip netip.Addr) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	uk, ik := userKey(user), ipKey(ip)
	ue, ie := l.get(uk), l.get(ik)
	if ue != nil && ue.failures+ue.pending >= l.perUser {
		retryAfter = max(retryAfter, ue.start.Add(l.window).Sub(now))
	}
	if ie != nil && ie.failures+ie.pending >= l.perIP {
		retryAfter = max(retryAfter, ie.start.Add(l.window).Sub(now))
	}
	if retryAfter > 0 {
		return false, retryAfter
	}
	need := 0
	if ue == nil {
		need++
	}
	if ie == nil {
		need++
	}
	if len(l.entries)+need > l.maxEntries {
		// Full of entries still in their window: fail closed.
		oldest := l.order.Front().Value.(*limitEntry)
		return false, max(oldest.start.Add(l.window).Sub(now), time.Second)
	}
	if ue == nil {
		ue = l.add(uk, now)
	}
	if ie == nil {
		ie = l.add(ik, now)
	}
	ue.pending++
	ie.pending++
	return true, 0
}

// Failure records a failed login for user from ip, settling the attempt
// Allow reserved.
func (l *Limiter) Failure(user string, ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	for _, k := range [...]string{userKey(user), ipKey(ip)} {
		e := l.get(k)
		if e == nil {
			// The window ended during the attempt, or Allow was not called.
			if len(l.entries) >= l.maxEntries {
				continue
			}
			e = l.add(k, now)
		}
		e.failures++
		e.pending = max(e.pending-1, 0)
	}
}

// Success records a successful login for user from ip: it clears the
// user's counter and settles the client's reservation. The client's
// failures stay counted, so one valid account cannot reset the per-client
// limit while spraying others.
func (l *Limiter) Success(user string, ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(l.now())
	if el, ok := l.entries[userKey(user)]; ok {
		l.remove(el)
	}
	if el, ok := l.entries[ipKey(ip)]; ok {
		e := el.Value.(*limitEntry)
		e.pending = max(e.pending-1, 0)
		if e.pending == 0 && e.failures == 0 {
			l.remove(el)
		}
	}
}

// Len returns the number of entries tracked, for metrics.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// sweep drops entries whose window has ended. The order list is sorted by
// window start, so it stops at the first live entry. l.mu must be held.
func (l *Limiter) sweep(now time.Time) {
	for el := l.order.Front(); el != nil; el = l.order.Front() {
		if now.Sub(el.Value.(*limitEntry).start) < l.window {
			return
		}
		l.remove(el)
	}
}

func (l *Limiter) get(key string) *limitEntry {
	if el, ok := l.entries[key]; ok {
		return el.Value.(*limitEntry)
	}
	return nil
}

func (l *Limiter) add(key string, now time.Time) *limitEntry {
	e := &limitEntry{key: key, start: now}
	l.entries[key] = l.order.PushBack(e)
	return e
}

func (l *Limiter) remove(el *list.Element) {
	delete(l.entries, el.Value.(*limitEntry).key)
	l.order.Remove(el)
}
