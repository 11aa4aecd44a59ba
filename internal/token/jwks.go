package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/json"
)

// verifyKey is one usable signature-verification key from a JWKS.
type verifyKey struct {
	kid string
	// alg is the JWK's alg member, "" when the JWK has none.
	alg string
	// pub is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey. Never a
	// []byte: go-jose would verify HMAC with it.
	pub any
}

// accepts reports whether k may verify a signature made with alg: the JWK's
// own alg, if it names one, must be alg, and the key family and curve must fit
// it. go-jose looks only at the key type, so it would let an RS256-only key
// verify PS256 (security-notes §2.2).
func (k *verifyKey) accepts(alg jose.SignatureAlgorithm) bool {
	if k.alg != "" && k.alg != string(alg) {
		return false
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return pub.Curve == elliptic.P256()
		case jose.ES384:
			return pub.Curve == elliptic.P384()
		case jose.ES512:
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// keyMap is one fetched JWKS, immutable once built.
type keyMap struct {
	byKID   map[string][]*verifyKey
	all     []*verifyKey
	fetched time.Time
}

// holds reports whether k (by identity) is in m.
func (m *keyMap) holds(k *verifyKey) bool {
	return slices.Contains(m.byKID[k.kid], k)
}

// carryOver replaces each key in m that is identical (kid, alg and public key)
// to one in old by old's, so that a refetch that does not change a key keeps
// its identity, and tokens cached under it stay cached.
func (m *keyMap) carryOver(old *keyMap) {
	if old == nil {
		return
	}
	same := make(map[*verifyKey]*verifyKey)
	for _, k := range m.all {
		for _, o := range old.byKID[k.kid] {
			if o.alg == k.alg && samePublicKey(o.pub, k.pub) {
				same[k] = o
				break
			}
		}
	}
	for _, keys := range m.byKID {
		for i, k := range keys {
			if o, ok := same[k]; ok {
				keys[i] = o
			}
		}
	}
	for i, k := range m.all {
		if o, ok := same[k]; ok {
			m.all[i] = o
		}
	}
}

func samePublicKey(a, b any) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// errKeyNotFound: no key with that kid; a refetch may find it.
var errKeyNotFound = fmt.Errorf("%w: no key with this kid in the JWKS", ErrUnknownKey)

// find returns the key for (kid, alg). A token without kid is verified only
// when exactly one key in the set accepts its alg. When several keys share a
// kid, the first that accepts alg is used.
func (m *keyMap) find(kid string, alg jose.SignatureAlgorithm) (*verifyKey, error) {
	cands := m.all
	if kid != "" {
		cands = m.byKID[kid]
	}
	if len(cands) == 0 {
		return nil, errKeyNotFound
	}
	var match *verifyKey
	for _, k := range cands {
		if !k.accepts(alg) {
			continue
		}
		if match != nil && kid == "" {
			return nil, fmt.Errorf("%w: token has no kid and several keys accept its algorithm", ErrUnknownKey)
		}
		if match == nil {
			match = k
		}
	}
	if match == nil {
		return nil, fmt.Errorf("%w: the key does not accept the token's algorithm", ErrUnknownKey)
	}
	return match, nil
}

// keySet is one issuer's JWKS cache. The keys are fetched on first use and
// refetched when a kid is unknown or the set is older than refresh, never more
// often than minRefetch; concurrent refetches are coalesced into one request.
type keySet struct {
	issuer     string
	url        string
	client     *http.Client
	now        func() time.Time
	minRefetch time.Duration
	refresh    time.Duration
	timeout    time.Duration
	logger     *slog.Logger

	// cur is the last successfully fetched key set, nil before the first. It
	// is read without the lock on every verification.
	cur atomic.Pointer[keyMap]

	mu          sync.Mutex // guards lastAttempt, lastErr, inflight
	lastAttempt time.Time  // start of the last fetch, successful or not
	lastErr     error      // outcome of the last fetch
	inflight    *fetchCall // the fetch in progress, if any
}

// fetchCall is one fetch that other callers may wait for.
type fetchCall struct {
	done chan struct{} // closed when keys and err are set
	keys *keyMap
	err  error
}

// lookup returns the key for (kid, alg), fetching or refetching the JWKS as
// the rules in keySet allow.
func (ks *keySet) lookup(ctx context.Context, kid string, alg jose.SignatureAlgorithm) (*keyMap, *verifyKey, error) {
	m := ks.cur.Load()
	if m != nil && ks.now().Sub(m.fetched) < ks.refresh {
		k, err := m.find(kid, alg)
		if !errors.Is(err, errKeyNotFound) {
			return m, k, err
		}
	}
	m, ferr := ks.update(ctx, m)
	if m == nil {
		if ferr == nil { // not reached: a finished fetch leaves keys or an error
			ferr = errors.New("no key set fetched")
		}
		return nil, nil, fmt.Errorf("%w: %w", ErrJWKSUnavailable, ferr)
	}
	k, err := m.find(kid, alg)
	if errors.Is(err, errKeyNotFound) && ferr == nil {
		err = fmt.Errorf("%w (refetched at most every %v)", errKeyNotFound, ks.minRefetch)
	}
	return m, k, err
}

// update makes sure a fetch newer than seen has been attempted, unless one
// started less than minRefetch ago. It returns the current key set (possibly
// still seen, possibly nil) and the error of the fetch it waited for or ran.
func (ks *keySet) update(ctx context.Context, seen *keyMap) (*keyMap, error) {
	return ks.updateFloor(ctx, seen, ks.minRefetch)
}

// updateFloor is update with an explicit floor: zero refetches whenever the
// caller has not seen a newer fetch.
func (ks *keySet) updateFloor(ctx context.Context, seen *keyMap, floor time.Duration) (*keyMap, error) {
	ks.mu.Lock()
	if cur := ks.cur.Load(); cur != seen {
		// Another caller fetched since we looked.
		ks.mu.Unlock()
		return cur, nil
	}
	if c := ks.inflight; c != nil {
		ks.mu.Unlock()
		select {
		case <-c.done:
			return c.keys, c.err
		case <-ctx.Done():
			return seen, ctx.Err()
		}
	}
	now := ks.now()
	if !ks.lastAttempt.IsZero() && now.Sub(ks.lastAttempt) < floor {
		err := ks.lastErr
		ks.mu.Unlock()
		return seen, err
	}
	c := &fetchCall{done: make(chan struct{})}
	ks.inflight = c
	ks.lastAttempt = now
	ks.mu.Unlock()

	// Publishing the outcome is deferred so that waiters are released even
	// if the fetch panics (a custom HTTPClient transport, say).
	var keys *keyMap
	err := errors.New("JWKS fetch did not complete")
	defer func() {
		ks.mu.Lock()
		if err == nil {
			keys.carryOver(ks.cur.Load())
			ks.cur.Store(keys)
		}
		ks.lastErr = err
		ks.inflight = nil
		c.keys, c.err = ks.cur.Load(), err
		ks.mu.Unlock()
		close(c.done)
	}()

	// The fetch is shared with every caller that arrives meanwhile, so it
	// does not stop when this caller's context is cancelled.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ks.timeout)
	defer cancel()
	keys, err = ks.fetch(fctx)
	if err != nil {
		ks.logger.Warn("JWKS fetch failed", "issuer", ks.issuer, "url", ks.url, "err", err)
		return ks.cur.Load(), err
	}
	return keys, nil
}

// fetch GETs and parses the JWKS. The response must be 200; its size is capped
// at MaxJWKSBytes; Cache-Control and Content-Type are not consulted.
func (ks *keySet) fetch(ctx context.Context) (*keyMap, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS %s: %w", ks.url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS %s: %w", ks.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching JWKS %s: status %d", ks.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS %s: %w", ks.url, err)
	}
	if len(body) > MaxJWKSBytes {
		return nil, fmt.Errorf("fetching JWKS %s: response larger than %d bytes", ks.url, MaxJWKSBytes)
	}
	m, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", ks.url, err)
	}
	m.fetched = ks.now()
	return m, nil
}

// parseJWKS reads a JWK Set (RFC 7517 §5) with go-jose's strict JSON and keeps
// only usable signature keys. It skips, without failing the set:
//   - oct keys, before go-jose builds them: a symmetric key in a public
//     document is an HMAC secret anyone can read, and handing go-jose a []byte
//     is what would make HS256 verification possible;
//   - keys whose use is not sig, or whose alg is not a supported signature
//     algorithm (encryption keys);
//   - private keys (a published private key must not be trusted), keys that
//     do not parse, unsupported key types, and RSA keys under MinRSABits.
//
// A set with no usable key is an error, so verification fails closed.
func parseJWKS(body []byte) (*keyMap, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, errors.New("not a JSON JWK Set")
	}
	if len(set.Keys) > MaxJWKSKeys {
		return nil, fmt.Errorf("more than %d keys", MaxJWKSKeys)
	}
	m := &keyMap{byKID: make(map[string][]*verifyKey, len(set.Keys))}
	for _, raw := range set.Keys {
		k, ok := parseJWK(raw)
		if !ok {
			continue
		}
		m.all = append(m.all, k)
		m.byKID[k.kid] = append(m.byKID[k.kid], k)
	}
	if len(m.all) == 0 {
		return nil, errors.New("no usable signing keys")
	}
	return m, nil
}

func parseJWK(raw []byte) (*verifyKey, bool) {
	var peek struct {
		Kty string `json:"kty"`
		Use string `json:"use"`
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &peek); err != nil {
		return nil, false
	}
	switch peek.Kty {
	case "RSA", "EC", "OKP":
	default:
		return nil, false // oct is never built; AKP and others unsupported
	}
	if peek.Use != "" && peek.Use != "sig" {
		return nil, false
	}
	if peek.Alg != "" && !slices.Contains(supportedAlgorithms, jose.SignatureAlgorithm(peek.Alg)) {
		return nil, false
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil || !jwk.Valid() || !jwk.IsPublic() {
		return nil, false
	}
	switch pub := jwk.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < MinRSABits {
			return nil, false
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, false
	}
	return &verifyKey{kid: jwk.KeyID, alg: jwk.Algorithm, pub: jwk.Key}, true
}
