package token

import (
	"sync"
	"time"
)

// tokenCache remembers verified tokens by the SHA-256 of the raw string, so a
// repeated token costs a hash and a map lookup instead of a signature check.
// precheck makes the raw string canonical, so one token has one key. Entries
// expire at min(exp, iat+MaxAge) without leeway (a token in its leeway window
// is verified afresh each time and not cached), and are not served once the
// key that verified them has left the issuer's key set or the set is due for
// refresh. When full, the oldest insertion is evicted.
type tokenCache struct {
	mu      sync.Mutex // guards entries (and each entry's keyMap), ring and next
	entries map[[32]byte]*cacheEntry
	// ring holds keys in insertion order; once it is full, next is the
	// oldest slot and the next to be overwritten.
	ring [][32]byte
	next int
	size int // the bound on entries
}

type cacheEntry struct {
	claims *Claims
	until  time.Time
	keys   *keySet
	// key verified the token; the entry is valid only while the issuer's
	// current key set holds it. keyMap is the set it was last seen in, which
	// makes that check a pointer comparison until the set is refetched.
	key    *verifyKey
	keyMap *keyMap
	slot   int
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{entries: make(map[[32]byte]*cacheEntry), size: size}
}

// get returns the cached claims for key, or nil. An entry is served only
// while the key that verified it is still in the issuer's current key set
// and that set is not due for refresh (refresh), so a withdrawn key stops
// serving cached tokens once the set is refetched, and the set is refetched
// at least every refresh interval by the next uncached verification.
func (c *tokenCache) get(key [32]byte, now time.Time, refresh time.Duration) *Claims {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		return nil
	}
	if !now.Before(e.until) {
		delete(c.entries, key)
		return nil
	}
	cur := e.keys.cur.Load()
	if cur == nil || now.Sub(cur.fetched) >= refresh {
		return nil
	}
	if cur != e.keyMap {
		if !cur.holds(e.key) {
			delete(c.entries, key)
			return nil
		}
		e.keyMap = cur
	}
	return e.claims
}

// put stores e under key, evicting the oldest entry when the cache is full.
// e.until must be in the future.
func (c *tokenCache) put(key [32]byte, e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.entries[key]; old != nil {
		e.slot = old.slot
		c.entries[key] = e
		return
	}
	if len(c.ring) < c.size {
		e.slot = len(c.ring)
		c.ring = append(c.ring, key)
	} else {
		e.slot = c.next
		oldest := c.ring[c.next]
		if old := c.entries[oldest]; old != nil && old.slot == c.next {
			delete(c.entries, oldest)
		}
		c.ring[c.next] = key
		c.next = (c.next + 1) % c.size
	}
	c.entries[key] = e
}
