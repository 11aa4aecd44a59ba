package upstream

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// assign maps each key to the index of the target it is picked for.
func assign(t *testing.T, h *Hash, keys []string) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		m, release, err := h.pickKey(hashString(k))
		if err != nil {
			t.Fatal(err)
		}
		release()
		out[i] = m.Target.Name
	}
	return out
}

func userKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d@example.com", i)
	}
	return keys
}

// TestHashMovesOnlyTheLeavingTargetsKeys checks the consistent hashing
// promise: a stable pool keeps every key in place; when one of N targets
// goes down or is removed by a reload, only its keys move (about 1/N), and
// they come back when it returns.
func TestHashMovesOnlyTheLeavingTargetsKeys(t *testing.T) {
	const n = 5
	keys := userKeys(10000)
	p := newTestPool(t, PoolOptions{}, 1, 1, 1, 1, 1)
	h, err := NewHash(p, HashOptions{Source: HashHeader, Name: "X-User"})
	if err != nil {
		t.Fatal(err)
	}
	before := assign(t, h, keys)
	if again := assign(t, h, keys); strings.Join(again, ",") != strings.Join(before, ",") {
		t.Fatal("keys moved in a stable pool")
	}
	share := map[string]int{}
	for _, name := range before {
		share[name]++
	}
	for name, c := range share {
		if c < 10000/n*7/10 || c > 10000/n*13/10 {
			t.Errorf("%s owns %d of 10000 keys, want about %d", name, c, 10000/n)
		}
	}

	leaving := p.members[2]
	check := func(t *testing.T, after []string) {
		moved := 0
		for i := range keys {
			if after[i] == before[i] {
				continue
			}
			moved++
			if before[i] != leaving.Target.Name {
				t.Fatalf("key %s moved from %s, which stayed, to %s", keys[i], before[i], after[i])
			}
			if after[i] == leaving.Target.Name {
				t.Fatalf("key %s sent to the target that left", keys[i])
			}
		}
		if limit := 10000 * 3 / (2 * n); moved > limit || moved != share[leaving.Target.Name] {
			t.Errorf("%d keys moved; want exactly the %d the leaving target owned, fewer than %d (1.5/N)", moved, share[leaving.Target.Name], limit)
		}
	}
	t.Run("down", func(t *testing.T) {
		leaving.setActive(false, "test", 0)
		check(t, assign(t, h, keys))
		leaving.setActive(true, "test", 0)
		if back := assign(t, h, keys); strings.Join(back, ",") != strings.Join(before, ",") {
			t.Error("keys did not return when the target came back")
		}
	})
	t.Run("removed by reload", func(t *testing.T) {
		var targets []WeightedTarget
		for _, m := range p.members {
			if m != leaving {
				targets = append(targets, WeightedTarget{Target: m.Target})
			}
		}
		p2, err := NewPool(PoolOptions{Targets: targets, Previous: p})
		if err != nil {
			t.Fatal(err)
		}
		h2, err := NewHash(p2, HashOptions{Source: HashHeader, Name: "X-User"})
		if err != nil {
			t.Fatal(err)
		}
		check(t, assign(t, h2, keys))
	})
}

func TestHashWeights(t *testing.T) {
	p := newTestPool(t, PoolOptions{}, 1, 1, 2)
	h, err := NewHash(p, HashOptions{Source: HashCookie, Name: "sid"})
	if err != nil {
		t.Fatal(err)
	}
	share := map[string]int{}
	for _, name := range assign(t, h, userKeys(20000)) {
		share[name]++
	}
	for i, want := range []int{5000, 5000, 10000} {
		got := share[p.members[i].Target.Name]
		if got < want*85/100 || got > want*115/100 {
			t.Errorf("target %d (weight %d) owns %d keys, want about %d", i, p.members[i].weight, got, want)
		}
	}
}

func TestHashSlowStartAdmitsAStableGrowingShare(t *testing.T) {
	clk := newFakeClock()
	p := newTestPool(t, PoolOptions{SlowStart: 100 * time.Second, Now: clk.Now}, 1, 1, 1, 1)
	h, err := NewHash(p, HashOptions{Source: HashHeader, Name: "X-User"})
	if err != nil {
		t.Fatal(err)
	}
	keys := userKeys(10000)
	full := assign(t, h, keys)
	m := p.members[1]
	owned := 0
	for _, name := range full {
		if name == m.Target.Name {
			owned++
		}
	}
	m.setActive(false, "test", 0)
	m.setActive(true, "test", clk.Now().UnixNano())
	prev := map[string]bool{}
	for _, step := range []struct {
		after    time.Duration
		permille int
	}{{0, 100}, {50 * time.Second, 550}, {50 * time.Second, 1000}} {
		clk.Add(step.after)
		got := map[string]bool{}
		for i, name := range assign(t, h, keys) {
			if name == m.Target.Name {
				got[keys[i]] = true
			}
		}
		want := owned * step.permille / 1000
		if d := len(got) - want; d < -owned/20 || d > owned/20 {
			t.Errorf("at %d‰: ramping target holds %d keys, want about %d of its %d", step.permille, len(got), want, owned)
		}
		for k := range prev {
			if !got[k] {
				t.Errorf("key %s left the ramping target as its weight grew", k)
				break
			}
		}
		prev = got
	}
}

func TestHashKeySources(t *testing.T) {
	p := newTestPool(t, PoolOptions{}, 1, 1, 1)
	clientIP := func(r *http.Request) netip.Addr {
		ip, _ := netip.ParseAddr(r.Header.Get("Test-Client-Ip"))
		return ip
	}
	ipKey := func(s string) string {
		a := netip.MustParseAddr(s).As16()
		return string(a[:])
	}
	tests := []struct {
		name string
		opts HashOptions
		req  *http.Request
		key  string // "" when the request has none
	}{
		{"cookie", HashOptions{Source: HashCookie, Name: "sid"},
			&http.Request{Header: http.Header{"Cookie": {"a=1; sid=abc; b=2"}}}, "abc"},
		{"quoted cookie on a second line", HashOptions{Source: HashCookie, Name: "sid"},
			&http.Request{Header: http.Header{"Cookie": {"a=1", `sidx=no; sid="abc"`}}}, "abc"},
		{"cookie absent", HashOptions{Source: HashCookie, Name: "sid"},
			&http.Request{Header: http.Header{"Cookie": {"sidx=1; xsid=2"}}}, ""},
		{"header named in lower case", HashOptions{Source: HashHeader, Name: "x-tenant"},
			&http.Request{Header: http.Header{"X-Tenant": {"abc", "def"}}}, "abc"},
		{"header absent", HashOptions{Source: HashHeader, Name: "X-Tenant"},
			&http.Request{Header: http.Header{}}, ""},
		{"client IP", HashOptions{Source: HashClientIP, ClientIP: clientIP},
			&http.Request{Header: http.Header{"Test-Client-Ip": {"192.0.2.7"}}}, ipKey("192.0.2.7")},
		{"client IPv4-mapped is the IPv4 key", HashOptions{Source: HashClientIP, ClientIP: clientIP},
			&http.Request{Header: http.Header{"Test-Client-Ip": {"::ffff:192.0.2.7"}}}, ipKey("192.0.2.7")},
		{"client IPv6", HashOptions{Source: HashClientIP, ClientIP: clientIP},
			&http.Request{Header: http.Header{"Test-Client-Ip": {"2001:db8::7"}}}, ipKey("2001:db8::7")},
		{"client IP unknown", HashOptions{Source: HashClientIP, ClientIP: clientIP},
			&http.Request{Header: http.Header{}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHash(p, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			kh, ok := h.key(tt.req)
			if ok != (tt.key != "") || ok && kh != hashString(tt.key) {
				t.Fatalf("key hash = %#x, %t; want the hash of %q", kh, ok, tt.key)
			}
			if tt.key != "" {
				want, release, _ := h.pickKey(kh)
				release()
				for range 10 {
					got, release, _ := h.Pick(tt.req)
					release()
					if got != want {
						t.Fatalf("picked %s, want %s", got.Target.Name, want.Target.Name)
					}
				}
				return
			}
			// No key: least_conn, so a loaded target is avoided.
			p.members[0].inflight.Store(5)
			p.members[1].inflight.Store(5)
			defer p.members[0].inflight.Store(0)
			defer p.members[1].inflight.Store(0)
			got, release, _ := h.Pick(tt.req)
			release()
			if got != p.members[2] {
				t.Errorf("without a key picked %s, want the idle target", got.Target.Name)
			}
		})
	}
}

func TestNewHashValidation(t *testing.T) {
	p := newTestPool(t, PoolOptions{Name: "p"}, 1)
	for _, opts := range []HashOptions{
		{},
		{Source: HashCookie},
		{Source: HashHeader},
		{Source: HashClientIP},
		{Source: HashHeader, Name: "x", VirtualNodes: -1},
	} {
		if _, err := NewHash(p, opts); err == nil {
			t.Errorf("NewHash(%+v) succeeded", opts)
		}
	}
}

func FuzzCookieValue(f *testing.F) {
	f.Add("a=1; sid=abc; b=2", "sid")
	f.Add(`sid=""`, "sid")
	f.Add(";;=;sid", "sid")
	f.Fuzz(func(t *testing.T, line, name string) {
		v := cookieValue(http.Header{"Cookie": {line}}, name)
		if v != "" && !strings.Contains(line, v) {
			t.Fatalf("value %q is not in %q", v, line)
		}
	})
}
