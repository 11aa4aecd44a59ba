package session

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// Purposes used by the tests, as the oidc package would use them.
const (
	sessionPurpose = "__Host-gh_session"
	flowPurpose    = "__Host-gh_flow"
)

// t0 is the tests' clock origin: a whole second, in UTC, so that sessions
// round-trip exactly.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

var ctx = context.Background()

// testKey returns a key whose secret is derived from id, so that different
// IDs have different secrets.
func testKey(id string) Key {
	secret := bytes.Repeat([]byte(id), 32/len(id)+1)[:32]
	secret[31] ^= 0x5a
	return Key{ID: id, Secret: secret}
}

func mustCodec(t testing.TB, ids ...string) *Codec {
	t.Helper()
	keys := make([]Key, len(ids))
	for i, id := range ids {
		keys[i] = testKey(id)
	}
	c, err := NewCodec(keys)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustRevocations(t testing.TB, max int) *RevocationList {
	t.Helper()
	l, err := NewRevocationList(RevocationOptions{MaxEntries: max})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testOptions are the store options the tests start from: a 30-minute idle
// timeout, a 12-hour lifetime and a touch every 3 minutes.
func testOptions(t testing.TB) CookieOptions {
	return CookieOptions{
		Codec:            mustCodec(t, "k1"),
		Name:             "gh_session",
		IdleTimeout:      30 * time.Minute,
		AbsoluteLifetime: 12 * time.Hour,
		Revocations:      mustRevocations(t, 0),
	}
}

func mustStore(t testing.TB, opts CookieOptions) *CookieStore {
	t.Helper()
	s, err := NewCookieStore(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// typicalSession is a session as an OIDC login leaves it: five groups, an
// opaque refresh token, no ID token and no extra claims.
func typicalSession(now time.Time) *Session {
	return &Session{
		ID:             NewID(),
		Issuer:         "https://id.example.com/realms/corp",
		Subject:        "3f9a0c2e-5b71-4d8e-9a63-0c1f7e2b4d95",
		Provider:       "corp",
		Email:          "ada.lovelace@example.com",
		Name:           "Ada Lovelace",
		Groups:         []string{"engineering", "analytics", "metabase-users", "oncall", "staff"},
		SID:            "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e",
		CreatedAt:      now,
		LastSeen:       now,
		AbsoluteExpiry: now.Add(12 * time.Hour),
		TokenExpiry:    now.Add(5 * time.Minute),
		RefreshToken:   "rt_" + strings.Repeat("Zm9vYmFy", 8),
	}
}

// fakeJWT returns a string of n bytes shaped like a compact JWS.
func fakeJWT(n int) string {
	b := []byte(strings.Repeat("eyJhbGciOiJSUzI1NiJ9", n/20+1)[:n])
	b[n/3], b[2*n/3] = '.', '.'
	return string(b)
}
