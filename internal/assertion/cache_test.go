package assertion

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

const app = "https://app.example.com"

func TestGetReusesAssertion(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now})
	tok1, exp1, err := s.Get("sess-1", alice, app)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(3 * time.Minute)
	tok2, exp2, err := s.Get("sess-1", alice, app)
	if err != nil {
		t.Fatal(err)
	}
	if tok1 != tok2 || !exp1.Equal(exp2) {
		t.Error("cached assertion not reused within its lifetime")
	}
	// Another audience, another session: distinct assertions.
	if tok, _, _ := s.Get("sess-1", alice, "https://other.example.com"); tok == tok1 {
		t.Error("assertion reused for another audience")
	}
	if tok, _, _ := s.Get("sess-2", alice, app); tok == tok1 {
		t.Error("assertion reused for another session")
	}
}

func TestChangedGroupsGetFreshAssertion(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now})
	tok1, _, err := s.Get("sess-1", alice, app)
	if err != nil {
		t.Fatal(err)
	}
	changed := alice
	changed.Groups = []string{"eng"} // admins revoked at the IdP, picked up by a refresh
	tok2, _, err := s.Get("sess-1", changed, app)
	if err != nil {
		t.Fatal(err)
	}
	if tok1 == tok2 {
		t.Fatal("changed groups served the cached assertion")
	}
	v, err := verify(tok2, s.JWKS(), app, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v.Claims.Groups, []string{"eng"}) {
		t.Errorf("groups = %q, want [eng]", v.Claims.Groups)
	}
}

func TestIdentityHashSeparatesFields(t *testing.T) {
	base := Identity{Issuer: "i", Subject: "s", Email: "e", Groups: []string{"a", "b"}}
	for name, other := range map[string]Identity{
		"joined-groups": {Issuer: "i", Subject: "s", Email: "e", Groups: []string{"a,b"}},
		"concat-groups": {Issuer: "i", Subject: "s", Email: "e", Groups: []string{"ab"}},
		"shifted":       {Issuer: "is", Subject: "", Email: "e", Groups: []string{"a", "b"}},
		"email":         {Issuer: "i", Subject: "s", Email: "e2", Groups: []string{"a", "b"}},
		"issuer":        {Issuer: "i2", Subject: "s", Email: "e", Groups: []string{"a", "b"}},
		"order":         {Issuer: "i", Subject: "s", Email: "e", Groups: []string{"b", "a"}},
		"no-groups":     {Issuer: "i", Subject: "s", Email: "e"},
	} {
		if identityHash(base) == identityHash(other) {
			t.Errorf("%s: same hash", name)
		}
	}
	long := Identity{Issuer: "i", Subject: "s", Groups: make([]string, 200)}
	for i := range long.Groups {
		long.Groups[i] = fmt.Sprintf("group-with-a-long-name-%03d", i)
	}
	long2 := long
	long2.Groups = append([]string(nil), long.Groups...)
	if identityHash(long) != identityHash(long2) {
		t.Error("hash not stable for a large identity")
	}
	long2.Groups[199] += "x"
	if identityHash(long) == identityHash(long2) {
		t.Error("large identities that differ share a hash")
	}
}

func TestGetRefreshesNearExpiry(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now}) // TTL 5m, margin 60s
	tok1, exp1, err := s.Get("sess-1", alice, app)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(4*time.Minute - time.Second)
	if tok, _, _ := s.Get("sess-1", alice, app); tok != tok1 {
		t.Fatal("refreshed before the margin")
	}
	clk.Advance(time.Second) // exactly exp − 60s
	tok2, exp2, err := s.Get("sess-1", alice, app)
	if err != nil {
		t.Fatal(err)
	}
	if tok2 == tok1 || !exp2.After(exp1) {
		t.Fatal("not refreshed at the margin")
	}
	if _, err := verify(tok2, s.JWKS(), app, clk.Now().Add(4*time.Minute)); err != nil {
		t.Errorf("fresh assertion: %v", err)
	}
}

func TestRefreshMargin(t *testing.T) {
	for _, tc := range []struct{ ttl, want time.Duration }{
		{5 * time.Minute, time.Minute},
		{2 * time.Minute, 30 * time.Second},
		{time.Minute, 30 * time.Second},
		{10 * time.Second, 5 * time.Second},
	} {
		if got := refreshMargin(tc.ttl); got != tc.want || got >= tc.ttl {
			t.Errorf("refreshMargin(%v) = %v, want %v", tc.ttl, got, tc.want)
		}
	}
}

func TestGetWithoutSessionDoesNotCache(t *testing.T) {
	s := newSigner(t, Options{Now: newClock().Now})
	tok1, _, _ := s.Get("", alice, app)
	tok2, _, _ := s.Get("", alice, app)
	if tok1 == tok2 || s.cache.len() != 0 {
		t.Error("empty session ID was cached")
	}
}

func TestCacheBounded(t *testing.T) {
	clk := newClock()
	t0 := clk.Now()
	s := newSigner(t, Options{Now: clk.Now, cacheEntries: 4})
	get := func(sess string) string {
		t.Helper()
		tok, _, err := s.Get(sess, alice, app)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	a, b := get("a"), get("b") // exp t0+5m
	clk.Advance(time.Minute)
	c := get("c") // exp t0+6m
	clk.Advance(time.Minute)
	d := get("d") // exp t0+7m
	e := get("e") // full, nothing expired: the oldest ("a") goes
	if n := s.cache.len(); n != 4 {
		t.Fatalf("len = %d, want 4", n)
	}
	if get("b") != b || get("c") != c || get("d") != d || get("e") != e {
		t.Error("a newer entry was evicted")
	}
	if _, ok := s.cache.m[cacheKey{session: "a", audience: app, ident: identityHash(alice)}]; ok {
		t.Error("the oldest entry was not evicted")
	}
	// At t0+6m b and c have expired. Both go, though one slot would do.
	clk.Advance(t0.Add(6 * time.Minute).Sub(clk.Now()))
	get("f")
	if n := s.cache.len(); n != 3 {
		t.Errorf("len = %d after the expiry sweep, want 3 (d, e, f)", n)
	}
	// Re-getting "a" now mints anew: its old assertion was evicted.
	if get("a") == a {
		t.Error("evicted assertion served")
	}
}

func TestGetConcurrent(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now, cacheEntries: 16})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := alice
				if i%7 == 0 {
					id.Groups = []string{"eng"}
				}
				tok, _, err := s.Get(fmt.Sprintf("sess-%d", (g+i)%24), id, app)
				if err != nil || tok == "" {
					t.Errorf("Get: %q, %v", tok, err)
					return
				}
				if i%50 == 0 {
					clk.Advance(30 * time.Second)
				}
			}
		})
	}
	wg.Wait()
	if n := s.cache.len(); n > 16 {
		t.Errorf("len = %d, want ≤ 16", n)
	}
}
