package token

import (
	"context"
	"crypto/sha256"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRepeatedTokenServedFromCache(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	tok := signAT(t, k.rsa1, baseClaims(c))
	first := mustVerify(t, v, tok)
	if n := len(v.cache.entries); n != 1 {
		t.Fatalf("cache entries = %d, want 1", n)
	}
	second := mustVerify(t, v, tok)
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("cached claims differ (-first +second):\n%s", diff)
	}
	// A cached verification costs one allocation (the Claims copy).
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("cached Verify allocates %v times, want at most 1", allocs)
	}
}

func TestCachedClaimsAreCopies(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	tok := signAT(t, k.rsa1, baseClaims(c))
	got := mustVerify(t, v, tok)
	got.Subject = "mallory"
	got.Email = "mallory@example.test"
	if again := mustVerify(t, v, tok); again.Subject != "alice" || again.Email != "alice@example.test" {
		t.Errorf("a caller's change reached the cache: %q %q", again.Subject, again.Email)
	}
}

func TestCacheEntryExpiresAtExp(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c)
	tok := signAT(t, k.rsa1, with(baseClaims(c), "exp", c.Now().Add(2*time.Minute).Unix()))
	mustVerify(t, v, tok)
	c.Advance(2 * time.Minute)
	// Past exp but inside the leeway: verified afresh, not cached again.
	mustVerify(t, v, tok)
	if n := len(v.cache.entries); n != 0 {
		t.Errorf("cache entries = %d, want 0", n)
	}
	c.Advance(DefaultLeeway)
	mustFail(t, v, tok, ErrExpired)
}

func TestCacheEvictsOldest(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c, func(o *Options) { o.CacheSize = 3 })
	var toks []string
	for _, sub := range []string{"a", "b", "c", "d", "e"} {
		tok := signAT(t, k.rsa1, with(baseClaims(c), "sub", sub))
		toks = append(toks, tok)
		mustVerify(t, v, tok)
		if n := len(v.cache.entries); n > 3 {
			t.Fatalf("cache holds %d entries, bound is 3", n)
		}
	}
	for i, tok := range toks {
		_, cached := v.cache.entries[sha256.Sum256([]byte(tok))]
		if want := i >= 2; cached != want {
			t.Errorf("token %d cached = %v, want %v", i, cached, want)
		}
	}
	// Re-verifying a cached token does not take a second slot.
	mustVerify(t, v, toks[4])
	if n := len(v.cache.ring); n != 3 {
		t.Errorf("ring length = %d, want 3", n)
	}
}

func TestCacheDroppedWhenKeysRefetched(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	long := with(baseClaims(c), "exp", c.Now().Add(3*time.Hour).Unix())
	tok := signAT(t, k.rsa1, long)
	mustVerify(t, v, tok)
	// The issuer withdraws every key it had (and publishes another); an
	// unknown kid triggers the refetch; the cached token no longer verifies.
	p.publish(t, k.ec1)
	c.Advance(DefaultMinRefetch)
	mustVerify(t, v, signAT(t, k.ec1, long))
	mustFail(t, v, tok, ErrUnknownKey)
}

func TestCacheSurvivesRefetchOfUnchangedKey(t *testing.T) {
	// An unknown kid (which anyone can send) refetches the JWKS; tokens
	// cached under keys that did not change stay cached.
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	v := newVerifier(t, p, c)
	tok := signAT(t, k.rsa1, baseClaims(c))
	mustVerify(t, v, tok)
	c.Advance(DefaultMinRefetch)
	mustFail(t, v, signAT(t, k.rsa2, baseClaims(c)), ErrUnknownKey)
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	if v.cache.get(sha256.Sum256([]byte(tok)), c.Now(), DefaultRefreshInterval) == nil {
		t.Error("the refetch dropped a token cached under an unchanged key")
	}
}

func TestFailuresNotCached(t *testing.T) {
	k := keysOnce()
	c := newClock()
	p := newIDP(t, k.rsa1)
	p.setBody(http.StatusInternalServerError, nil)
	v := newVerifier(t, p, c)
	tok := signAT(t, k.rsa1, baseClaims(c))
	mustFail(t, v, tok, ErrJWKSUnavailable)
	if n := len(v.cache.entries); n != 0 {
		t.Errorf("cache entries = %d after a failure", n)
	}
	p.publish(t, k.rsa1)
	c.Advance(DefaultMinRefetch)
	mustVerify(t, v, tok)
}

func TestCacheDisabled(t *testing.T) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(t, newIDP(t, k.rsa1), c, func(o *Options) { o.CacheSize = -1 })
	if v.cache != nil {
		t.Fatal("cache not disabled")
	}
	tok := signAT(t, k.rsa1, baseClaims(c))
	mustVerify(t, v, tok)
	mustVerify(t, v, tok)
}
