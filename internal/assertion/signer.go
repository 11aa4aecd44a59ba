package assertion

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// TokenType is the JOSE typ header of every assertion. Verifiers check it
	// so an assertion can never pass as an ID token or access token, and
	// gatehouse's own bearer-token verifier refuses it.
	TokenType = "gatehouse-assertion+jwt"

	// JWKSPath is where gatehouse serves [Signer.ServeJWKS].
	JWKSPath = "/.well-known/gatehouse/jwks.json"

	// MaxTTL caps Options.TTL (security notes §7 item 10: exp ≤ 5 min).
	MaxTTL = 5 * time.Minute
	// MinTTL is the shortest Options.TTL accepted.
	MinTTL = 10 * time.Second
	// DefaultTTL is used when Options.TTL is zero.
	DefaultTTL = MaxTTL

	// DefaultCacheEntries bounds the assertion cache of [Signer.Get].
	DefaultCacheEntries = 50_000
)

// Identity is the authenticated user an assertion speaks for. It mirrors the
// fields of gatehouse's session identity that upstream apps need.
type Identity struct {
	// Issuer is the user's identity provider (the ID token's iss). Required.
	// It becomes the idp claim; apps key users on (idp, sub).
	Issuer string
	// Subject is the user's subject at Issuer. Required.
	Subject string
	// Email is the user's email address, if known. Omitted when empty.
	Email string
	// Groups are the user's groups. Always emitted as an array (possibly empty).
	Groups []string
}

// Options configures a [Signer].
type Options struct {
	// Issuer is gatehouse's public URL, the iss of every assertion, e.g.
	// "https://auth.example.com". Required: an absolute http(s) URL without
	// query, fragment or user info. Apps compare it exactly.
	Issuer string
	// Keys are the signing keys. Required, with distinct IDs. Keys[0] signs;
	// every key is published in the JWKS. See the package documentation for
	// the rotation procedure.
	Keys []Key
	// TTL is the lifetime of an assertion (exp − iat). Default DefaultTTL
	// (5 min); between MinTTL and MaxTTL.
	TTL time.Duration
	// Now returns the current time. Default time.Now. Tests inject a clock.
	Now func() time.Time

	// cacheEntries overrides DefaultCacheEntries; tests only.
	cacheEntries int
}

// Signer mints assertions with Options.Keys[0] and publishes the JWKS of all
// keys. It is immutable apart from its cache and safe for concurrent use.
// A configuration change (such as a rotation step) builds a new Signer.
type Signer struct {
	issuer string
	kid    string
	ttl    time.Duration
	margin time.Duration
	now    func() time.Time
	sig    jose.Signer
	jwks   []byte
	cache  cache
}

// New validates opts, collecting every problem, and returns a Signer.
func New(opts Options) (*Signer, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if err := validateIssuer(opts.Issuer); err != nil {
		add("Issuer: %w", err)
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < MinTTL || ttl > MaxTTL {
		add("TTL: %v is outside [%v, %v]", opts.TTL, MinTTL, MaxTTL)
	}
	if len(opts.Keys) == 0 {
		add("Keys: at least one key is required")
	}
	seen := make(map[string]bool, len(opts.Keys))
	for i, k := range opts.Keys {
		if problems := k.problems(); len(problems) > 0 {
			for _, err := range problems {
				add("Keys[%d]: %w", i, err)
			}
			continue
		}
		if seen[k.ID] {
			add("Keys[%d]: duplicate key ID %q", i, k.ID)
		}
		seen[k.ID] = true
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("assertion options: %w", errors.Join(errs...))
	}

	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, len(opts.Keys))}
	for i, k := range opts.Keys {
		set.Keys[i] = jose.JSONWebKey{
			Key:       &k.Private.PublicKey, // public half only: never d
			KeyID:     k.ID,
			Algorithm: string(jose.ES256),
			Use:       "sig",
		}
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("marshaling JWKS: %w", err)
	}

	first := opts.Keys[0]
	sig, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: first.Private, KeyID: first.ID}},
		(&jose.SignerOptions{}).WithType(TokenType),
	)
	if err != nil {
		return nil, fmt.Errorf("building ES256 signer: %w", err)
	}

	now := opts.Now
	if now == nil {
		now = time.Now
	}
	entries := opts.cacheEntries
	if entries <= 0 {
		entries = DefaultCacheEntries
	}
	return &Signer{
		issuer: opts.Issuer,
		kid:    first.ID,
		ttl:    ttl,
		margin: refreshMargin(ttl),
		now:    now,
		sig:    sig,
		jwks:   jwks,
		cache:  newCache(entries),
	}, nil
}

// refreshMargin is how long before exp [Signer.Get] stops handing out a
// cached assertion: TTL/5, but at least min(30 s, TTL/2). With the default
// 5-minute TTL that is 60 s, so an app always receives an assertion that is
// valid for at least another minute, which absorbs clock skew and slow
// requests.
func refreshMargin(ttl time.Duration) time.Duration {
	return max(ttl/5, min(30*time.Second, ttl/2))
}

func validateIssuer(s string) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("%q must not have user info, a query or a fragment", s)
	}
	return nil
}

// validateAudience requires an origin in its serialized form (RFC 6454 §6.1):
// lower-case scheme http or https, lower-case host, optional port, nothing
// else. Apps compare aud with their own origin exactly, so a spelling
// variant would just be a verification failure at the app.
func validateAudience(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		s != u.Scheme+"://"+u.Host || s != strings.ToLower(s) {
		return fmt.Errorf("audience %q is not an origin (scheme://host[:port], lower case)", s)
	}
	return nil
}

// claims is the assertion payload. Field order is the JSON order.
type claims struct {
	Issuer   string   `json:"iss"`
	Audience string   `json:"aud"`
	Subject  string   `json:"sub"`
	IdP      string   `json:"idp"`
	Email    string   `json:"email,omitempty"`
	Groups   []string `json:"groups"`
	IssuedAt int64    `json:"iat"`
	Expiry   int64    `json:"exp"`
	ID       string   `json:"jti"`
}

// Mint signs a new assertion for ident, addressed to audience (the route's
// origin, e.g. "https://app.example.com"), and returns it with its expiry.
// Every call produces a fresh jti and signature; use [Signer.Get] on the
// request path.
func (s *Signer) Mint(ident Identity, audience string) (string, time.Time, error) {
	if ident.Issuer == "" || ident.Subject == "" {
		return "", time.Time{}, errors.New("minting assertion: identity issuer and subject are required")
	}
	if err := validateAudience(audience); err != nil {
		return "", time.Time{}, fmt.Errorf("minting assertion: %w", err)
	}
	// NumericDate has one-second resolution (RFC 7519 §2); truncating here
	// keeps the returned expiry equal to the exp claim.
	iat := s.now().Truncate(time.Second)
	exp := iat.Add(s.ttl)
	groups := ident.Groups
	if groups == nil {
		groups = []string{}
	}
	var jti [16]byte
	rand.Read(jti[:]) // never fails (crypto/rand, Go ≥ 1.24)
	payload, err := json.Marshal(claims{
		Issuer:   s.issuer,
		Audience: audience,
		Subject:  ident.Subject,
		IdP:      ident.Issuer,
		Email:    ident.Email,
		Groups:   groups,
		IssuedAt: iat.Unix(),
		Expiry:   exp.Unix(),
		ID:       base64.RawURLEncoding.EncodeToString(jti[:]),
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("minting assertion: %w", err)
	}
	obj, err := s.sig.Sign(payload)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("minting assertion: signing: %w", err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("minting assertion: serializing: %w", err)
	}
	return tok, exp, nil
}

// KeyID returns the kid of the signing key (Options.Keys[0]).
func (s *Signer) KeyID() string { return s.kid }

// JWKS returns the public JWK Set of every configured key (kty EC, crv P-256,
// x, y, kid, alg ES256, use sig). It never contains private key material.
// The caller owns the returned slice.
func (s *Signer) JWKS() []byte { return append([]byte(nil), s.jwks...) }

// ServeJWKS serves [Signer.JWKS] at [JWKSPath] for GET and HEAD. The document
// may be cached for 5 minutes, which is why a new key must be published for at
// least TTL plus that before it signs (see the package documentation).
func (s *Signer) ServeJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", fmt.Sprint(len(s.jwks)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(s.jwks)
}
