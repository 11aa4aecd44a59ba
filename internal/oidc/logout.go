package oidc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/token"
)

// backchannelEvent is the member a logout token's events claim must have
// (OpenID Connect Back-Channel Logout 1.0 §2.4).
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// maxLogoutTokenAge bounds how old a logout token's iat may be. Senders
// deliver within seconds and may not retry.
const maxLogoutTokenAge = 5 * time.Minute

// LogoutRequest is what a verified logout token asks for: end the sessions
// of Subject, or of the provider session SID, or both (either may be empty,
// not both).
type LogoutRequest struct {
	Issuer  string
	Subject string
	SID     string
}

// VerifyLogoutToken validates a back-channel logout token fully (§2.6):
// signature with the pinned algorithms and the provider's keys, typ
// logout+jwt when a typ is present (JWT accepted for older providers),
// iss exact, aud containing gatehouse's client ID, iat recent, exp not
// passed when present, the back-channel logout event, sub or sid, no nonce,
// and a jti not seen before.
func (p *Provider) VerifyLogoutToken(ctx context.Context, raw string) (*LogoutRequest, error) {
	m, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	typ, err := token.TypeHeader(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrLogoutToken, token.Reason(err))
	}
	t := strings.TrimPrefix(strings.ToLower(typ), "application/")
	if t != "" && t != "logout+jwt" && t != "jwt" {
		return nil, fmt.Errorf("%w: typ is not logout+jwt", ErrLogoutToken)
	}
	payload, err := m.keys.VerifySignature(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrLogoutToken, token.Reason(err))
	}
	std, all, err := decodeClaims(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogoutToken, err)
	}
	now := p.opts.Now()
	sid, _ := all["sid"].(string)
	events, _ := all["events"].(map[string]any)
	_, hasEvent := events[backchannelEvent].(map[string]any)
	_, hasNonce := all["nonce"]
	switch {
	case std.Issuer != p.opts.Issuer:
		return nil, fmt.Errorf("%w: iss", ErrLogoutToken)
	case !slices.Contains([]string(std.Audience), p.opts.ClientID):
		return nil, fmt.Errorf("%w: aud", ErrLogoutToken)
	case std.IssuedAt == nil:
		return nil, fmt.Errorf("%w: no iat", ErrLogoutToken)
	case std.IssuedAt.Time().After(now.Add(DefaultLeeway)):
		return nil, fmt.Errorf("%w: iat in the future", ErrLogoutToken)
	case now.Sub(std.IssuedAt.Time()) > maxLogoutTokenAge:
		return nil, fmt.Errorf("%w: iat too old", ErrLogoutToken)
	case std.Expiry != nil && now.After(std.Expiry.Time().Add(DefaultLeeway)):
		return nil, fmt.Errorf("%w: expired", ErrLogoutToken)
	case !hasEvent:
		return nil, fmt.Errorf("%w: no back-channel logout event", ErrLogoutToken)
	case hasNonce:
		return nil, fmt.Errorf("%w: nonce present", ErrLogoutToken)
	case std.Subject == "" && sid == "":
		return nil, fmt.Errorf("%w: neither sub nor sid", ErrLogoutToken)
	}
	if std.ID != "" && !p.replays.First(std.Issuer+"\x00"+std.ID, now) {
		return nil, fmt.Errorf("%w: jti replayed", ErrLogoutToken)
	}
	return &LogoutRequest{Issuer: std.Issuer, Subject: std.Subject, SID: sid}, nil
}

// maxReplayEntries bounds the logout token IDs remembered.
const maxReplayEntries = 10_000

// ReplayCache remembers keys (logout token IDs, redeemed login states) for
// a time-to-live, so that a second use is refused. It is bounded: when full,
// it drops entries older than the TTL, and if still full it refuses every
// new key (fail closed under a flood). It is safe for concurrent use.
type ReplayCache struct {
	ttl time.Duration
	max int

	mu   sync.Mutex // guards seen
	seen map[string]time.Time
}

// NewReplayCache returns a cache that remembers keys for ttl, at most max
// at once.
func NewReplayCache(ttl time.Duration, max int) *ReplayCache {
	return &ReplayCache{ttl: ttl, max: max, seen: map[string]time.Time{}}
}

// First records key and reports whether it was not seen before.
func (c *ReplayCache) First(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[key]; ok {
		return false
	}
	if len(c.seen) >= c.max {
		for k, t := range c.seen {
			if now.Sub(t) > c.ttl {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= c.max {
			return false
		}
	}
	c.seen[key] = now
	return true
}
