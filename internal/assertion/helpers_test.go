package assertion

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const testIssuer = "https://auth.example.com"

// clock is an injected, settable clock.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var (
	keyOnce  sync.Once
	testKeys [3]Key
)

// keys returns three fixed-for-the-process keys: k1, k2, k3.
func keys(t testing.TB) (Key, Key, Key) {
	t.Helper()
	keyOnce.Do(func() {
		for i, id := range []string{"k1", "k2", "k3"} {
			k, err := GenerateKey(id)
			if err != nil {
				panic(err)
			}
			testKeys[i] = k
		}
	})
	return testKeys[0], testKeys[1], testKeys[2]
}

func newSigner(t testing.TB, opts Options) *Signer {
	t.Helper()
	if opts.Issuer == "" {
		opts.Issuer = testIssuer
	}
	if opts.Keys == nil {
		k1, _, _ := keys(t)
		opts.Keys = []Key{k1}
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

var alice = Identity{
	Issuer:  "https://idp.example.com",
	Subject: "alice-123",
	Email:   "alice@example.com",
	Groups:  []string{"eng", "admins"},
}

// verified is what an app learns from a verified assertion.
type verified struct {
	Header jose.Header
	Claims struct {
		jwt.Claims
		IdP    string   `json:"idp"`
		Email  string   `json:"email"`
		Groups []string `json:"groups"`
	}
	Raw map[string]any // every claim, to catch extras
}

// verify checks tok the way the package doc tells an app to: ES256 pinned,
// keys only from the published JWKS, typ, iss, aud and exp checked.
func verify(tok string, jwksJSON []byte, audience string, now time.Time) (*verified, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksJSON, &set); err != nil {
		return nil, err
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, err
	}
	var v verified
	v.Header = parsed.Headers[0]
	if err := parsed.Claims(set, &v.Claims, &v.Raw); err != nil {
		return nil, err
	}
	if typ := v.Header.ExtraHeaders[jose.HeaderType]; typ != TokenType {
		return nil, errTyp{typ}
	}
	if v.Claims.Expiry == nil {
		return nil, jwt.ErrExpired
	}
	if err := v.Claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      testIssuer,
		AnyAudience: jwt.Audience{audience},
		Time:        now,
	}, 0); err != nil {
		return nil, err
	}
	return &v, nil
}

type errTyp struct{ got any }

func (e errTyp) Error() string { return "unexpected typ" }
