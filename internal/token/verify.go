package token

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unsafe"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Verifier verifies bearer access tokens. It is safe for concurrent use and
// immutable apart from its caches; a configuration reload builds a new one.
type Verifier struct {
	issuers       map[string]*issuerState
	rejected      map[string]struct{}
	algorithms    []jose.SignatureAlgorithm // union of every issuer's pinned algorithms
	leeway        time.Duration
	maxAge        time.Duration
	refresh       time.Duration
	maxTokenBytes int
	now           func() time.Time
	cache         *tokenCache // nil when disabled
}

// Claims are the verified claims of an access token. The Verifier may hand the
// same Audience, Groups and Raw values to several callers: treat them as
// read-only.
type Claims struct {
	// Issuer is iss, exactly one of the configured issuers.
	Issuer string
	// Subject is sub, never empty. Key identities on (Issuer, Subject).
	Subject string
	// Audience is aud, which contains at least one configured audience.
	Audience []string
	// Expiry is exp.
	Expiry time.Time
	// IssuedAt is iat.
	IssuedAt time.Time
	// NotBefore is nbf, zero when the token has none.
	NotBefore time.Time
	// ID is jti, "" when absent.
	ID string
	// Email is the email claim, "" when absent.
	Email string
	// Groups is the groups claim (a JSON array of strings, or a single
	// string), nil when absent. No other claim name is consulted.
	Groups []string
	// Scope is the scope claim (RFC 9068 §2.2.3, space-separated), "" when
	// absent.
	Scope string
	// Raw holds every claim, decoded with go-jose's strict JSON (numbers are
	// float64).
	Raw map[string]any
	// Ref identifies the token without disclosing it: "tok:" and the hex
	// of the first 12 bytes of its SHA-256. It is stable for the token's
	// lifetime, for caches keyed on the credential and for audit records.
	Ref string
}

// claimSet is the typed view of the payload. Decoding into it with go-jose's
// JSON is strict: names match case-sensitively, a duplicate name anywhere in
// the payload is an error, and a registered claim of the wrong JSON type
// (an exp that is a string, an email that is a number) is an error too.
type claimSet struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ID        string           `json:"jti"`
	Email     string           `json:"email"`
	Groups    stringList       `json:"groups"`
	Scope     string           `json:"scope"`
}

// stringList decodes a JSON array of strings or a single string.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
		*s = nil
	case string:
		*s = []string{v}
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			str, ok := e.(string)
			if !ok {
				return fmt.Errorf("groups: element %d is not a string", i)
			}
			out[i] = str
		}
		*s = out
	default:
		return fmt.Errorf("groups: not a string or an array of strings")
	}
	return nil
}

// idTokenClaims mark a token without typ at+jwt as an ID token, not an access
// token: nonce, at_hash and c_hash are ID-token claims (OIDC Core §2,
// §3.1.3.6, §3.3.2.11). The events claim, refused whatever the typ, marks
// logout and security-event tokens (OIDC Back-Channel Logout §2.4, RFC 8417).
var idTokenClaims = []string{"nonce", "at_hash", "c_hash"}

// Verify checks raw, a bearer token without its "Bearer " prefix, and returns
// its claims. Every error wraps one of the package's sentinel errors (see
// [Reason]) and never contains any part of the token. ctx bounds only the
// wait for a JWKS fetch.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > v.maxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrTooLarge, v.maxTokenBytes)
	}
	now := v.now()
	var key [32]byte
	if v.cache != nil {
		// A hit is a string that passed every check before, so the cache is
		// consulted before the (linear) shape pre-check; hashing is not
		// parsing.
		key = tokenKey(raw)
		if c := v.cache.get(key, now, v.refresh); c != nil {
			cp := *c
			return &cp, nil
		}
	}
	if err := precheck(raw, v.maxTokenBytes); err != nil {
		return nil, err
	}
	c, e, err := v.verify(ctx, raw, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		until := c.Expiry
		if maxAge := c.IssuedAt.Add(v.maxAge); maxAge.Before(until) {
			until = maxAge
		}
		if now.Before(until) {
			e.claims, e.until = c, until
			v.cache.put(key, e)
		}
	}
	cp := *c
	return &cp, nil
}

// tokenKey is the cache key of a token: its SHA-256, so the cache never holds
// a usable bearer token. The string is hashed in place: []byte(raw) would copy
// the whole token to the heap on every request, and Sum256 neither keeps nor
// modifies its argument.
func tokenKey(raw string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw))) //nolint:gosec // G103: read-only view, see above
}

func tokenRef(raw string) string {
	k := tokenKey(raw)
	return "tok:" + hex.EncodeToString(k[:12])
}

// verify is the uncached path. Before the signature is checked, the token is
// only used to refuse it by its header and to choose the key; every claim is
// checked after.
func (v *Verifier) verify(ctx context.Context, raw string, now time.Time) (*Claims, *cacheEntry, error) {
	h, err := parseHeader(raw[:strings.IndexByte(raw, '.')])
	if err != nil {
		return nil, nil, err
	}
	alg := jose.SignatureAlgorithm(h.alg)
	if !slices.Contains(v.algorithms, alg) {
		return nil, nil, fmt.Errorf("%w: alg is not pinned for any issuer", ErrAlgorithm)
	}
	kind, err := classifyTyp(h)
	if err != nil {
		return nil, nil, err
	}

	tok, err := jwt.ParseSigned(raw, v.algorithms)
	if err != nil || len(tok.Headers) != 1 {
		return nil, nil, fmt.Errorf("%w: not a single-signature JWS", ErrMalformed)
	}
	if hd := tok.Headers[0]; hd.Algorithm != h.alg || hd.KeyID != h.kid {
		// Cannot happen: both read the same bytes with the same decoder.
		return nil, nil, fmt.Errorf("%w: header mismatch", ErrMalformed)
	}

	// The payload is decoded once, here, and trusted only after the
	// signature over these same bytes has verified below.
	var cs claimSet
	var all map[string]any
	if err := tok.UnsafeClaimsWithoutVerification(&cs, &all); err != nil || all == nil {
		return nil, nil, fmt.Errorf("%w: claims are not a strict JSON object of the expected types", ErrMalformed)
	}

	// The unverified iss only chooses the key set.
	if _, ok := v.rejected[cs.Issuer]; ok {
		return nil, nil, fmt.Errorf("%w: issuer is never accepted for bearer tokens", ErrTokenType)
	}
	is := v.issuers[cs.Issuer]
	if is == nil {
		return nil, nil, fmt.Errorf("%w: not a configured issuer", ErrIssuer)
	}
	if !slices.Contains(is.algorithms, alg) {
		return nil, nil, fmt.Errorf("%w: alg is not pinned for this issuer", ErrAlgorithm)
	}
	if is.requireAT && kind != kindAccess {
		return nil, nil, fmt.Errorf("%w: issuer requires typ at+jwt", ErrTokenType)
	}
	km, k, err := is.keys.lookup(ctx, h.kid, alg)
	if err != nil {
		return nil, nil, err
	}
	if err := tok.Claims(k.pub); err != nil {
		return nil, nil, ErrSignature
	}

	// Signature verified: now the claims.
	if err := v.checkClaims(is, kind, &cs, all, now); err != nil {
		return nil, nil, err
	}
	c := &Claims{
		Issuer:   cs.Issuer,
		Subject:  cs.Subject,
		Audience: []string(cs.Audience),
		Expiry:   cs.Expiry.Time(),
		IssuedAt: cs.IssuedAt.Time(),
		ID:       cs.ID,
		Email:    cs.Email,
		Groups:   []string(cs.Groups),
		Scope:    cs.Scope,
		Raw:      all,
		Ref:      tokenRef(raw),
	}
	if cs.NotBefore != nil {
		c.NotBefore = cs.NotBefore.Time()
	}
	return c, &cacheEntry{keys: is.keys, key: k, keyMap: km}, nil
}

// checkClaims applies the claim rules after the signature has verified.
func (v *Verifier) checkClaims(is *issuerState, kind tokenKind, cs *claimSet, all map[string]any, now time.Time) error {
	if cs.Issuer != is.issuer {
		return fmt.Errorf("%w: iss does not match", ErrIssuer)
	}
	// Token type, claim half (the header half is classifyTyp).
	if _, ok := all["events"]; ok {
		return fmt.Errorf("%w: events claim marks a logout or security-event token", ErrTokenType)
	}
	if kind == kindGeneric {
		for _, name := range idTokenClaims {
			if _, ok := all[name]; ok {
				return fmt.Errorf("%w: %s claim marks an ID token", ErrTokenType, name)
			}
		}
	}
	switch {
	case cs.Subject == "":
		return fmt.Errorf("%w: sub", ErrMissingClaim)
	case len(cs.Audience) == 0:
		return fmt.Errorf("%w: aud", ErrMissingClaim)
	case cs.Expiry == nil:
		return fmt.Errorf("%w: exp", ErrMissingClaim)
	case cs.IssuedAt == nil:
		return fmt.Errorf("%w: iat", ErrMissingClaim)
	}
	if !now.Before(cs.Expiry.Time().Add(v.leeway)) {
		return fmt.Errorf("%w: exp is more than the leeway in the past", ErrExpired)
	}
	if cs.NotBefore != nil && now.Add(v.leeway).Before(cs.NotBefore.Time()) {
		return fmt.Errorf("%w: nbf is more than the leeway in the future", ErrNotYetValid)
	}
	iat := cs.IssuedAt.Time()
	if now.Add(v.leeway).Before(iat) {
		return fmt.Errorf("%w: iat is more than the leeway in the future", ErrNotYetValid)
	}
	if now.Sub(iat) > v.maxAge {
		return fmt.Errorf("%w: iat is older than the maximum age %v", ErrExpired, v.maxAge)
	}
	if !slices.ContainsFunc(is.audiences, func(a string) bool { return slices.Contains(cs.Audience, a) }) {
		return fmt.Errorf("%w: aud contains no configured audience", ErrAudience)
	}
	return nil
}
