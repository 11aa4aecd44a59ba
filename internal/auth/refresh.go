package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/oidc"
	"github.com/gatehouse-proxy/gatehouse/internal/session"
)

// refreshTimeout bounds one refresh with the provider. The refresh runs
// detached from the request that triggered it: a client going away must not
// lose a rotated refresh token.
const refreshTimeout = 15 * time.Second

// replaceTTL is how long the cookie a refresh replaced keeps working, for
// requests the browser sent before it saw the new cookie. Without it, such a
// request would refresh again with the rotated-out refresh token, and the
// provider would end the session: the "random logout" of other proxies.
const replaceTTL = 2 * time.Minute

// retryAfterUnavailable spaces refresh attempts while the provider is
// unreachable.
const retryAfterUnavailable = 10 * time.Second

type refreshResult struct {
	session *session.Session
	value   string // the new cookie value
	err     error
}

// refresh renews s with its provider, one refresh per session at a time:
// concurrent requests with the same cookie wait for the first one and share
// its result.
func (g *Gate) refresh(ctx context.Context, s *session.Session, key [32]byte, now time.Time) *refreshResult {
	return g.refreshes.do(string(key[:]), func() *refreshResult {
		// Another request may have finished this refresh while we waited
		// for the lock.
		if r, ok := g.replaced.get(key, now); ok {
			return r
		}
		if g.replaced.failedRecently(key, now) {
			return &refreshResult{err: oidc.ErrRefreshUnavailable}
		}
		r := g.doRefresh(context.WithoutCancel(ctx), s, now)
		switch {
		case r.err == nil:
			g.replaced.put(key, r, now)
		case errors.Is(r.err, oidc.ErrRefreshUnavailable):
			g.replaced.fail(key, now)
			g.opts.Log.Warn("session refresh failed; retrying later", "session", s.ID.Ref(), "provider", s.Provider, "err", r.err)
		default:
			g.opts.Log.Info("session refresh refused; session ended", "session", s.ID.Ref(), "provider", s.Provider, "err", r.err)
			if err := g.opts.Store.Revoke(ctx, s, now); err != nil {
				g.opts.Log.Error("revoking session after failed refresh", "session", s.ID.Ref(), "err", err)
			}
		}
		return r
	})
}

func (g *Gate) doRefresh(ctx context.Context, s *session.Session, now time.Time) *refreshResult {
	p := g.providers[s.Provider]
	if p == nil {
		return &refreshResult{err: fmt.Errorf("%w: provider %q is no longer configured", oidc.ErrRefresh, s.Provider)}
	}
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	id, err := p.Refresh(ctx, s.RefreshToken, s.Subject)
	if err != nil {
		return &refreshResult{err: err}
	}
	ns := *s
	ns.Groups = id.Groups
	ns.Email, ns.Name = id.Email, id.Name
	ns.TokenExpiry = id.Expiry
	ns.RefreshToken = id.RefreshToken
	if id.IDToken != "" {
		ns.IDTokenHint = id.IDToken
	}
	if id.SID != "" {
		ns.SID = id.SID
	}
	ns.LastSeen = now
	if id.Claims != nil {
		ns.Extra = g.extra(id)
	} else if g.opts.KeepAccessToken && id.AccessToken != "" {
		ns.Extra = maps.Clone(s.Extra)
		if ns.Extra == nil {
			ns.Extra = map[string]string{}
		}
		ns.Extra[extraAccessToken] = id.AccessToken
	}
	revokeOld := false
	if !slices.Equal(s.Groups, ns.Groups) || s.Email != ns.Email {
		// A change of privilege gets a fresh session ID (ASVS v5 7.2.4);
		// the old ID is revoked once the new cookie is issued. App
		// sessions (Metabase) were opened with the old groups, which the
		// app applies only at sign-in: they end, and new ones are opened
		// at the next request.
		ns.ID = session.NewID()
		revokeOld = true
		ns.Extra = maps.Clone(ns.Extra) // s's may be shared
		maps.DeleteFunc(ns.Extra, func(k, _ string) bool { return strings.HasPrefix(k, extraAppPrefix) })
	} else if id.Claims != nil {
		keepAppBindings(s.Extra, &ns) // g.extra rebuilt Extra from the claims
	}
	value, err := g.save(ctx, &ns, now)
	if err != nil {
		return &refreshResult{err: fmt.Errorf("%w: saving the refreshed session: %w", oidc.ErrRefresh, err)}
	}
	if revokeOld {
		// Only now: had the save failed, the user would keep s, and its
		// app sessions with it.
		g.endAppSessions(s)
		if err := g.opts.Store.Revoke(ctx, s, now); err != nil {
			g.opts.Log.Error("revoking the session replaced at refresh", "session", s.ID.Ref(), "err", err)
		}
	}
	g.opts.Log.Debug("session refreshed", "session", ns.ID.Ref(), "provider", ns.Provider, "new_id", revokeOld)
	return &refreshResult{session: &ns, value: value}
}

// save stores s. A session that does not fit a cookie because of a kept
// access token is saved without it (routes that pass it then send none)
// rather than failing the sign-in.
func (g *Gate) save(ctx context.Context, s *session.Session, now time.Time) (string, error) {
	v, err := g.opts.Store.Save(ctx, s, now)
	if errors.Is(err, session.ErrTooLarge) && s.Extra[extraAccessToken] != "" {
		g.opts.Log.Warn("access token not kept: the session cookie would be too large", "session", s.ID.Ref(), "provider", s.Provider)
		s.Extra = maps.Clone(s.Extra)
		delete(s.Extra, extraAccessToken)
		v, err = g.opts.Store.Save(ctx, s, now)
	}
	return v, err
}

// extra builds the session's Extra map from an identity: the username, the
// email_verified flag and the kept claims, JSON-encoded.
func (g *Gate) extra(id *oidc.Identity) map[string]string {
	m := map[string]string{}
	if id.Username != "" {
		m[extraUsername] = id.Username
	}
	if id.EmailVerified {
		m[extraEmailVerified] = "1"
	}
	if g.opts.KeepAccessToken && id.AccessToken != "" {
		m[extraAccessToken] = id.AccessToken
	}
	for _, name := range g.opts.KeepClaims {
		v, ok := oidc.LookupClaim(id.Claims, name)
		if !ok {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil || len(b) > 1024 {
			g.opts.Log.Warn("claim not kept in the session: too large", "claim", name)
			continue
		}
		m[extraClaimPrefix+name] = string(b)
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// replaceMap remembers, for replaceTTL, which session a refreshed cookie
// was replaced by, and which cookies failed to refresh recently.
type replaceMap struct {
	mu     sync.Mutex // guards done, failed
	done   map[[32]byte]replaced
	failed map[[32]byte]time.Time
	// used is set at the first refresh, so that until then a request
	// does not hash its cookie to look for a replacement.
	used atomic.Bool
}

// active reports whether any refresh has happened.
func (m *replaceMap) active() bool { return m.used.Load() }

type replaced struct {
	r  *refreshResult
	at time.Time
}

const maxReplaced = 50_000

func (m *replaceMap) get(key [32]byte, now time.Time) (*refreshResult, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.done[key]
	if !ok || now.Sub(e.at) > replaceTTL {
		return nil, false
	}
	return e.r, true
}

func (m *replaceMap) put(key [32]byte, r *refreshResult, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done == nil {
		m.done = map[[32]byte]replaced{}
	}
	if len(m.done) >= maxReplaced {
		maps.DeleteFunc(m.done, func(_ [32]byte, e replaced) bool { return now.Sub(e.at) > replaceTTL })
	}
	if len(m.done) < maxReplaced {
		m.done[key] = replaced{r: r, at: now}
	}
	m.used.Store(true)
	delete(m.failed, key)
}

func (m *replaceMap) fail(key [32]byte, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failed == nil {
		m.failed = map[[32]byte]time.Time{}
	}
	if len(m.failed) >= maxReplaced {
		maps.DeleteFunc(m.failed, func(_ [32]byte, at time.Time) bool { return now.Sub(at) > retryAfterUnavailable })
	}
	if len(m.failed) < maxReplaced {
		m.failed[key] = now
	}
}

func (m *replaceMap) failedRecently(key [32]byte, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.failed[key]
	return ok && now.Sub(at) < retryAfterUnavailable
}
