package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// KeySetOptions configures a KeySet.
type KeySetOptions struct {
	// Issuer names the key set in log messages. Required.
	Issuer string
	// JWKSURL is where the keys are fetched from, under the same rules as
	// Issuer.JWKSURL. Required.
	JWKSURL string
	// Algorithms are the pinned signature algorithms, as for Issuer.
	// Required.
	Algorithms []string
	// MinRefetch, RefreshInterval, FetchTimeout, HTTPClient, Now and
	// Logger are as in Options, with the same defaults.
	MinRefetch      time.Duration
	RefreshInterval time.Duration
	FetchTimeout    time.Duration
	HTTPClient      *http.Client
	Now             func() time.Time
	Logger          *slog.Logger
}

// KeySet verifies JWS signatures with one issuer's JWKS, under the same
// rules as Verifier: pinned algorithms, forbidden header parameters refused
// (jwk, jku, x5u, x5c, crit, ...), keys matched by kid and algorithm family,
// and a refetch on an unknown kid no more often than MinRefetch. It
// implements go-oidc's KeySet interface, so ID tokens and logout tokens get
// the refetch floor that go-oidc's RemoteKeySet lacks (security-notes §2.2).
// It checks no claims.
type KeySet struct {
	algorithms []jose.SignatureAlgorithm
	keys       *keySet
}

// NewKeySet validates opts and returns a KeySet. It makes no request.
func NewKeySet(opts KeySetOptions) (*KeySet, error) {
	o := Options{
		Issuers: []Issuer{{
			Issuer:     opts.Issuer,
			JWKSURL:    opts.JWKSURL,
			Audiences:  []string{"unused"},
			Algorithms: opts.Algorithms,
		}},
		MinRefetch:      opts.MinRefetch,
		RefreshInterval: opts.RefreshInterval,
		FetchTimeout:    opts.FetchTimeout,
		HTTPClient:      opts.HTTPClient,
		Now:             opts.Now,
		Logger:          opts.Logger,
		CacheSize:       -1,
	}
	v, err := New(o)
	if err != nil {
		return nil, err
	}
	is := v.issuers[opts.Issuer]
	return &KeySet{algorithms: is.algorithms, keys: is.keys}, nil
}

// VerifySignature checks the signature of raw, a JWS in compact
// serialization, and returns its payload. Errors wrap the package's
// sentinels and never contain the token.
func (ks *KeySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	if err := precheck(raw, MaxTokenBytesLimit); err != nil {
		return nil, err
	}
	h, err := parseHeader(raw[:strings.IndexByte(raw, '.')])
	if err != nil {
		return nil, err
	}
	alg := jose.SignatureAlgorithm(h.alg)
	if !slices.Contains(ks.algorithms, alg) {
		return nil, fmt.Errorf("%w: alg is not pinned for this issuer", ErrAlgorithm)
	}
	sig, err := jose.ParseSignedCompact(raw, ks.algorithms)
	if err != nil || len(sig.Signatures) != 1 {
		return nil, fmt.Errorf("%w: not a single-signature JWS", ErrMalformed)
	}
	_, k, err := ks.keys.lookup(ctx, h.kid, alg)
	if err != nil {
		return nil, err
	}
	payload, err := sig.Verify(k.pub)
	if err != nil {
		return nil, ErrSignature
	}
	return payload, nil
}

// VerifySignatureTrusted is VerifySignature for a token that came from the
// issuer itself over an authenticated channel (an ID token in a token
// endpoint response, not anything a client sent): an unknown kid refetches
// the JWKS even within the refetch floor, since a provider that has just
// rotated its key would otherwise fail a login or refresh for up to
// MinRefetch. Concurrent refetches are still coalesced.
func (ks *KeySet) VerifySignatureTrusted(ctx context.Context, raw string) ([]byte, error) {
	payload, err := ks.VerifySignature(ctx, raw)
	if !errors.Is(err, ErrUnknownKey) {
		return payload, err
	}
	if _, ferr := ks.keys.updateFloor(ctx, ks.keys.cur.Load(), 0); ferr != nil {
		return nil, err
	}
	return ks.VerifySignature(ctx, raw)
}

// TypeHeader returns the typ header parameter of raw, a JWS in compact
// serialization, without verifying anything ("" when absent).
func TypeHeader(raw string) (string, error) {
	i := strings.IndexByte(raw, '.')
	if i < 0 || len(raw) > MaxTokenBytesLimit {
		return "", ErrMalformed
	}
	h, err := parseHeader(raw[:i])
	if err != nil {
		return "", err
	}
	return h.typ, nil
}
