package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Options configures the demo app's check of gatehouse's signed assertion,
// which is what a real application should do instead of trusting the
// identity headers alone.
type Options struct {
	// JWKSURL is gatehouse's key set, such as
	// http://127.0.0.1:8080/.well-known/gatehouse/jwks.json. Empty: the
	// assertion is shown but not verified.
	JWKSURL string
	// Issuer is gatehouse's public URL, the assertion's expected iss.
	Issuer string
	// AssertionHeader is the header carrying the assertion.
	// Default: X-Gatehouse-Assertion.
	AssertionHeader string
}

// Verified is the outcome of checking the assertion of one request.
type Verified struct {
	OK      bool     `json:"ok"`
	Error   string   `json:"error,omitempty"`
	Subject string   `json:"sub,omitempty"`
	Email   string   `json:"email,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	Expires string   `json:"expires,omitempty"`
}

// verifier fetches gatehouse's JWKS (again on an unknown kid, at most every
// 10 s) and checks assertions: ES256, iss, aud = the origin the user
// visited (X-Forwarded-Proto and X-Forwarded-Host, which gatehouse sets),
// exp, and gatehouse's typ.
type verifier struct {
	opts   Options
	client *http.Client

	mu      sync.Mutex // guards keys, fetched
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

func (v *verifier) verify(r *http.Request) *Verified {
	raw := r.Header.Get(v.opts.AssertionHeader)
	if raw == "" {
		return nil
	}
	out := &Verified{}
	claims, err := v.check(r.Context(), raw, r.Header.Get("X-Forwarded-Proto")+"://"+r.Header.Get("X-Forwarded-Host"))
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.OK = true
	out.Subject, out.Email, out.Groups = claims.Subject, claims.Email, claims.Groups
	out.Expires = claims.Expiry.Time().UTC().Format(time.RFC3339)
	return out
}

type assertionClaims struct {
	jwt.Claims
	Email  string   `json:"email"`
	Groups []string `json:"groups"`
}

func (v *verifier) check(ctx context.Context, raw, audience string) (*assertionClaims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Headers) != 1 {
		return nil, errors.New("not a signed JWT")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != "gatehouse-assertion+jwt" {
		return nil, errors.New("not a gatehouse assertion (typ)")
	}
	keys, err := v.keySet(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	var c assertionClaims
	if err := tok.Claims(keys, &c); err != nil {
		return nil, errors.New("signature does not verify with gatehouse's keys")
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: v.opts.Issuer, AnyAudience: jwt.Audience{audience}, Time: time.Now()}, 30*time.Second); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	if c.Expiry == nil {
		return nil, errors.New("no exp")
	}
	return &c, nil
}

func (v *verifier) keySet(ctx context.Context, kid string) (*jose.JSONWebKeySet, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys != nil && len(v.keys.Key(kid)) > 0 {
		return v.keys, nil
	}
	if v.keys != nil && time.Since(v.fetched) < 10*time.Second {
		return nil, errors.New("unknown signing key")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.opts.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, errors.New("fetching gatehouse's JWKS failed")
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set) != nil {
		return nil, errors.New("gatehouse's JWKS is unreadable")
	}
	set.Keys = slices.DeleteFunc(set.Keys, func(k jose.JSONWebKey) bool { return !k.IsPublic() })
	v.keys, v.fetched = &set, time.Now()
	if len(set.Key(kid)) == 0 {
		return nil, errors.New("unknown signing key")
	}
	return v.keys, nil
}
