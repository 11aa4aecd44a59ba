package assertion

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// cacheKey identifies a cached assertion. ident is a SHA-256 over the whole
// Identity, so a session whose claims changed (new groups after a refresh)
// misses and gets a fresh assertion instead of a stale one.
type cacheKey struct {
	session  string
	audience string
	ident    [sha256.Size]byte
}

type cacheEntry struct {
	key       cacheKey
	token     string
	exp       time.Time
	refreshAt time.Time     // exp − margin; the entry is served while now < refreshAt
	elem      *list.Element // in cache.order
}

// cache is a bounded map of assertions. Every entry has the same TTL, so
// insertion order is also expiry order: the front of order is both the oldest
// entry and the first to expire, and evicting from the front evicts expired
// entries first, then the oldest.
type cache struct {
	max int

	mu    sync.Mutex // guards m and order
	m     map[cacheKey]*cacheEntry
	order list.List // of *cacheEntry, oldest at the front
}

func newCache(n int) cache {
	return cache{max: n, m: make(map[cacheKey]*cacheEntry)}
}

// get returns the token for k if it is still outside the refresh margin.
func (c *cache) get(k cacheKey, now time.Time) (string, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.refreshAt) {
		return "", time.Time{}, false
	}
	return e.token, e.exp, true
}

// put stores a token, first dropping expired entries from the front and then,
// if the cache is still full, the oldest entries.
func (c *cache) put(k cacheKey, token string, exp, refreshAt, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[k]; ok {
		c.remove(old)
	}
	for f := c.order.Front(); f != nil; f = c.order.Front() {
		e := f.Value.(*cacheEntry)
		if now.Before(e.exp) && len(c.m) < c.max {
			break
		}
		c.remove(e)
	}
	e := &cacheEntry{key: k, token: token, exp: exp, refreshAt: refreshAt}
	e.elem = c.order.PushBack(e)
	c.m[k] = e
}

func (c *cache) remove(e *cacheEntry) {
	c.order.Remove(e.elem)
	delete(c.m, e.key)
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// identityHash hashes every Identity field with length prefixes, so that no
// two different identities (say groups ["a,b"] and ["a", "b"]) share an input.
// Typical identities fit the stack buffer and cost no allocation.
func identityHash(id Identity) [sha256.Size]byte {
	buf := make([]byte, 0, 1024)
	str := func(s string) {
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	str(id.Issuer)
	str(id.Subject)
	str(id.Email)
	buf = binary.BigEndian.AppendUint64(buf, uint64(len(id.Groups)))
	for _, g := range id.Groups {
		str(g)
	}
	return sha256.Sum256(buf)
}

// Get returns an assertion for ident at audience, reusing the one cached for
// (sessionID, audience, ident) until it comes within the refresh margin of
// its expiry (TTL/5, at least min(30 s, TTL/2)), and minting a new one after
// that. The cache holds at most 50,000 assertions. An empty sessionID is not
// cached. A cache hit costs no allocation.
//
// Concurrent misses for the same key may each mint; the last one stored wins.
// Both assertions are valid, so this only costs a signature.
func (s *Signer) Get(sessionID string, ident Identity, audience string) (string, time.Time, error) {
	if sessionID == "" {
		return s.Mint(ident, audience)
	}
	k := cacheKey{session: sessionID, audience: audience, ident: identityHash(ident)}
	now := s.now()
	if tok, exp, ok := s.cache.get(k, now); ok {
		return tok, exp, nil
	}
	tok, exp, err := s.Mint(ident, audience)
	if err != nil {
		return "", time.Time{}, err
	}
	s.cache.put(k, tok, exp, exp.Add(-s.margin), now)
	return tok, exp, nil
}
