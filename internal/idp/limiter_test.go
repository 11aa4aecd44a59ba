package idp

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is an injected clock that tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time // guarded by mu
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestLimiter(t *testing.T, opts LimiterOptions) (*Limiter, *fakeClock) {
	t.Helper()
	c := newFakeClock()
	opts.Now = c.Now
	l, err := NewLimiter(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

// fail runs one failed login attempt and reports whether it was allowed.
func fail(l *Limiter, user string, ip netip.Addr) bool {
	ok, _ := l.Allow(user, ip)
	if ok {
		l.Failure(user, ip)
	}
	return ok
}

func TestPasswordSprayLimitedPerIP(t *testing.T) {
	l, _ := newTestLimiter(t, LimiterOptions{})
	attacker := netip.MustParseAddr("198.51.100.7")
	for i := range 20 {
		if !fail(l, fmt.Sprintf("user%d", i), attacker) {
			t.Fatalf("attempt %d refused; want 20 allowed", i)
		}
	}
	ok, retry := l.Allow("user20", attacker)
	if ok || retry != 15*time.Minute {
		t.Errorf("21st user from one IP: Allow = %v, %v; want false, 15m", ok, retry)
	}
	// The IPv4-mapped form of the same address is the same client.
	if ok, _ := l.Allow("user21", netip.MustParseAddr("::ffff:198.51.100.7")); ok {
		t.Error("IPv4-mapped address escaped the per-IP limit")
	}
	// A successful login with a valid account does not reset the client.
	if ok, _ := l.Allow("user0", netip.MustParseAddr("198.51.100.8")); !ok {
		t.Fatal("another client refused")
	}
	l.Success("user0", netip.MustParseAddr("198.51.100.8"))
	l.Success("user0", attacker)
	if ok, _ := l.Allow("user22", attacker); ok {
		t.Error("Success reset the per-IP counter")
	}
}

func TestCredentialStuffingLimitedPerUser(t *testing.T) {
	l, clock := newTestLimiter(t, LimiterOptions{})
	for i := range 5 {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if !fail(l, "alice", ip) {
			t.Fatalf("attempt %d refused; want 5 allowed", i)
		}
		clock.Advance(time.Minute)
	}
	// A new address, and a different spelling of the same username.
	for _, user := range []string{"alice", "ALICE", "Alice"} {
		ok, retry := l.Allow(user, netip.MustParseAddr("203.0.113.99"))
		if ok || retry != 10*time.Minute {
			t.Errorf("Allow(%q) from a fresh IP = %v, %v; want false, 10m", user, ok, retry)
		}
	}
	if ok, _ := l.Allow("bob", netip.MustParseAddr("203.0.113.1")); !ok {
		t.Error("bob refused; the per-user limit must not spill over")
	}
}

func TestSuccessClearsUserCounter(t *testing.T) {
	l, _ := newTestLimiter(t, LimiterOptions{PerIP: 100})
	ip := netip.MustParseAddr("192.0.2.1")
	for range 4 {
		fail(l, "alice", ip)
	}
	if ok, _ := l.Allow("alice", ip); !ok {
		t.Fatal("5th attempt refused")
	}
	l.Success("alice", ip)
	for i := range 5 {
		if !fail(l, "alice", ip) {
			t.Fatalf("attempt %d after success refused", i)
		}
	}
	if ok, _ := l.Allow("alice", ip); ok {
		t.Error("6th failure after success allowed")
	}
}

func TestIPv6RotationWithinSlash64Limited(t *testing.T) {
	l, _ := newTestLimiter(t, LimiterOptions{})
	for i := range 20 {
		// A different address in 2001:db8:1:2::/64 every time.
		ip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, byte(i), 0xaa, 0, 0, 0, 0, 0, byte(i * 7)})
		if !fail(l, fmt.Sprintf("user%d", i), ip) {
			t.Fatalf("attempt %d refused", i)
		}
	}
	for _, s := range []string{"2001:db8:1:2:ffff::1", "2001:db8:1:2::dead%eth0"} {
		if ok, _ := l.Allow("user99", netip.MustParseAddr(s)); ok {
			t.Errorf("%s escaped the /64 limit", s)
		}
	}
	if ok, _ := l.Allow("user99", netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Error("a neighbouring /64 was refused")
	}
}

func TestLimiterWindowExpires(t *testing.T) {
	l, clock := newTestLimiter(t, LimiterOptions{PerUser: 3, Window: 10 * time.Minute})
	ip := netip.MustParseAddr("192.0.2.1")
	for range 3 {
		fail(l, "alice", ip)
	}
	clock.Advance(4 * time.Minute)
	ok, retry := l.Allow("alice", ip)
	if ok || retry != 6*time.Minute {
		t.Fatalf("Allow = %v, %v; want false, 6m", ok, retry)
	}
	clock.Advance(retry - time.Nanosecond)
	if ok, _ := l.Allow("alice", ip); ok {
		t.Fatal("allowed before the window ended")
	}
	clock.Advance(time.Nanosecond)
	if ok, _ := l.Allow("alice", ip); !ok {
		t.Fatal("still refused after the window ended")
	}
	l.Failure("alice", ip)
	if got := l.Len(); got != 2 {
		t.Errorf("Len = %d, want 2 (old entries swept, new ones added)", got)
	}
}

// TestParallelAttemptsCannotExceedLimit sends a burst of simultaneous
// attempts: each allowed one reserves a slot, so no more than PerUser pass
// before any failure is recorded.
func TestParallelAttemptsCannotExceedLimit(t *testing.T) {
	l, _ := newTestLimiter(t, LimiterOptions{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for i := range 100 {
		wg.Go(func() {
			ip := netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)})
			if ok, _ := l.Allow("alice", ip); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 5 {
		t.Errorf("%d parallel attempts allowed, want 5", allowed)
	}
}

func TestLimiterFailsClosedWhenFull(t *testing.T) {
	l, clock := newTestLimiter(t, LimiterOptions{MaxEntries: 4})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	fail(l, "alice", a)
	clock.Advance(time.Minute)
	fail(l, "bob", b)
	if l.Len() != 4 {
		t.Fatalf("Len = %d, want 4", l.Len())
	}
	// A new key while every entry is fresh: refused until the oldest expires.
	ok, retry := l.Allow("carol", netip.MustParseAddr("192.0.2.3"))
	if ok || retry != 14*time.Minute {
		t.Errorf("new key when full: Allow = %v, %v; want false, 14m", ok, retry)
	}
	// Tracked keys still work.
	if ok, _ := l.Allow("bob", a); !ok {
		t.Error("tracked keys refused when full")
	}
	l.Failure("bob", a)
	clock.Advance(14 * time.Minute) // alice's and a's windows end
	if ok, _ := l.Allow("carol", netip.MustParseAddr("192.0.2.3")); !ok {
		t.Error("new key refused after the oldest entries expired")
	}
	if l.Len() > 4 {
		t.Errorf("Len = %d, above MaxEntries", l.Len())
	}
}

func TestNewLimiterRejectsNegativeOptions(t *testing.T) {
	if _, err := NewLimiter(LimiterOptions{PerUser: -1}); err == nil {
		t.Error("negative PerUser accepted")
	}
}
