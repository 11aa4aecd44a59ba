package oidc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

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
	_ = payload
	tok, err := jwt.ParseSigned(raw, joseAlgs(p.opts.Algorithms))
	if err != nil {
		return nil, fmt.Errorf("%w: malformed", ErrLogoutToken)
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.UnsafeClaimsWithoutVerification(&std, &all); err != nil {
		return nil, fmt.Errorf("%w: claims are not strict JSON", ErrLogoutToken)
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
	if std.ID != "" && !p.replays.first(std.Issuer+"\x00"+std.ID, now) {
		return nil, fmt.Errorf("%w: jti replayed", ErrLogoutToken)
	}
	return &LogoutRequest{Issuer: std.Issuer, Subject: std.Subject, SID: sid}, nil
}

// replayCache remembers logout token IDs for maxLogoutTokenAge plus the
// leeway, bounded in size.
type replayCache struct {
	mu   sync.Mutex // guards seen
	seen map[string]time.Time
}

const maxReplayEntries = 10_000

// first records key and reports whether it was not seen before.
func (c *replayCache) first(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	if _, ok := c.seen[key]; ok {
		return false
	}
	if len(c.seen) >= maxReplayEntries {
		for k, t := range c.seen {
			if now.Sub(t) > maxLogoutTokenAge+DefaultLeeway {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= maxReplayEntries {
			return false // fail closed: a flood of distinct tokens
		}
	}
	c.seen[key] = now
	return true
}
