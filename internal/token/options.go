package token

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Defaults and limits for [Options]. A zero field in Options takes the default.
const (
	DefaultLeeway          = 60 * time.Second
	DefaultMaxAge          = 24 * time.Hour
	DefaultMinRefetch      = 10 * time.Second
	DefaultRefreshInterval = time.Hour
	DefaultFetchTimeout    = 10 * time.Second
	DefaultMaxTokenBytes   = 8 << 10
	DefaultCacheSize       = 10_000

	// MaxLeeway bounds Options.Leeway: a clock skew beyond it is a broken
	// clock, not skew.
	MaxLeeway = 5 * time.Minute
	// MaxTokenBytesLimit bounds Options.MaxTokenBytes.
	MaxTokenBytesLimit = 64 << 10
	// MaxJWKSBytes caps a JWKS response body; a larger one is a fetch error.
	MaxJWKSBytes = 512 << 10
	// MaxJWKSKeys caps the number of keys read from one JWKS.
	MaxJWKSKeys = 100
	// MaxKIDBytes caps the kid header parameter. Real kids are 8 to 64 bytes.
	MaxKIDBytes = 256
	// MinRSABits is the smallest RSA modulus accepted from a JWKS; smaller
	// keys are skipped.
	MinRSABits = 2048
)

// Issuer is one trusted token issuer.
type Issuer struct {
	// Issuer is the exact iss value, compared byte for byte (no trailing-slash
	// or case normalization). Required.
	Issuer string
	// JWKSURL is where the issuer's signing keys are fetched from: https, or
	// http only on a loopback address (tests, a sidecar IdP). Keys come from
	// here and nowhere else; keys named or embedded in a token are refused.
	// Required.
	JWKSURL string
	// Audiences are the accepted aud values; the token's aud must contain at
	// least one. Use an API audience distinct from every OIDC client_id so that
	// ID tokens (aud = client_id) can never pass as access tokens. Required.
	Audiences []string
	// Algorithms is the pinned list of signature algorithms: RS256, RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA. HS* and none
	// are refused here, so no token is ever verified with a shared secret.
	// Required.
	Algorithms []string
	// RequireAccessTokenType accepts only tokens whose typ header is at+jwt
	// (RFC 9068 §2.1). Set it when the issuer emits RFC 9068 access tokens:
	// it closes the token-type question by the header alone. Default false:
	// typ JWT or no typ is accepted too, subject to the claim rule in the
	// package documentation.
	RequireAccessTokenType bool
}

// Options configures a [Verifier]. Zero values take the documented defaults.
// New copies what it needs; later changes to Options have no effect.
type Options struct {
	// Issuers are the trusted issuers. Required, with distinct Issuer values.
	Issuers []Issuer
	// Leeway is the one clock-skew allowance applied to exp, nbf and iat.
	// Default 60s; at most MaxLeeway.
	Leeway time.Duration
	// MaxAge refuses tokens whose iat is older than this, whatever their exp.
	// Default 24h.
	MaxAge time.Duration
	// MinRefetch is the floor between two JWKS fetches for one issuer, whatever
	// triggers them (unknown kid, refresh, an earlier failure). Default 10s.
	MinRefetch time.Duration
	// RefreshInterval is how long a fetched JWKS is used before the next
	// verification refetches it, so that a key the issuer withdraws stops
	// verifying (and stops serving cached tokens) within this interval. If the
	// refetch fails, the previous keys stay in use and the refetch is retried
	// after MinRefetch. Default 1h; at least MinRefetch.
	RefreshInterval time.Duration
	// FetchTimeout bounds one JWKS fetch. Default 10s.
	FetchTimeout time.Duration
	// HTTPClient fetches JWKS documents. Default: a client that follows at
	// most 3 redirects, and only to URLs that JWKSURL itself would accept.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// RejectIssuers are iss values never accepted as bearer credentials, even
	// when correctly signed: gatehouse's own upstream-assertion issuer belongs
	// here. They may not also appear in Issuers.
	RejectIssuers []string
	// MaxTokenBytes caps the token length, checked before any parsing.
	// Default 8 KiB; at most MaxTokenBytesLimit.
	MaxTokenBytes int
	// CacheSize bounds the verified-token cache (entries, oldest evicted
	// first). Default 10,000; negative disables the cache.
	CacheSize int
	// Logger receives JWKS fetch failures (at Warn). Default: discard.
	Logger *slog.Logger
}

// supportedAlgorithms are the algorithms an Issuer may pin. All are
// asymmetric: the verification key is public, so it can be fetched.
var supportedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// issuerState is the validated, immutable form of an Issuer plus its key set.
type issuerState struct {
	issuer     string
	audiences  []string
	algorithms []jose.SignatureAlgorithm
	requireAT  bool
	keys       *keySet
}

// New validates opts and returns a Verifier. It reports every problem at once,
// one per line, and makes no network request: each JWKS is fetched on first
// use.
func New(opts Options) (*Verifier, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	o := opts
	setDuration(&o.Leeway, DefaultLeeway, "Leeway", add)
	setDuration(&o.MaxAge, DefaultMaxAge, "MaxAge", add)
	setDuration(&o.MinRefetch, DefaultMinRefetch, "MinRefetch", add)
	setDuration(&o.RefreshInterval, DefaultRefreshInterval, "RefreshInterval", add)
	setDuration(&o.FetchTimeout, DefaultFetchTimeout, "FetchTimeout", add)
	if o.Leeway > MaxLeeway {
		add("Leeway: %v is more than the maximum %v", o.Leeway, MaxLeeway)
	}
	if o.RefreshInterval < o.MinRefetch {
		add("RefreshInterval: %v is less than MinRefetch %v", o.RefreshInterval, o.MinRefetch)
	}
	switch {
	case o.MaxTokenBytes == 0:
		o.MaxTokenBytes = DefaultMaxTokenBytes
	case o.MaxTokenBytes < 0 || o.MaxTokenBytes > MaxTokenBytesLimit:
		add("MaxTokenBytes: %d is outside 1..%d", o.MaxTokenBytes, MaxTokenBytesLimit)
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = defaultHTTPClient()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}

	rejected := make(map[string]struct{}, len(o.RejectIssuers))
	for i, iss := range o.RejectIssuers {
		if iss == "" {
			add("RejectIssuers[%d]: empty issuer", i)
		}
		rejected[iss] = struct{}{}
	}

	if len(o.Issuers) == 0 {
		add("Issuers: at least one issuer is required")
	}
	issuers := make(map[string]*issuerState, len(o.Issuers))
	var union []jose.SignatureAlgorithm
	for i, is := range o.Issuers {
		p := fmt.Sprintf("Issuers[%d]", i)
		if is.Issuer == "" {
			add("%s.Issuer: required", p)
		}
		if _, dup := issuers[is.Issuer]; dup && is.Issuer != "" {
			add("%s.Issuer: %q is configured twice", p, is.Issuer)
		}
		if _, bad := rejected[is.Issuer]; bad && is.Issuer != "" {
			add("%s.Issuer: %q is also in RejectIssuers", p, is.Issuer)
		}
		u, err := url.Parse(is.JWKSURL)
		switch {
		case is.JWKSURL == "":
			add("%s.JWKSURL: required", p)
		case err != nil:
			add("%s.JWKSURL: not a URL", p)
		case !jwksURLAllowed(u):
			add("%s.JWKSURL: %q must be https (http only on a loopback address)", p, is.JWKSURL)
		}
		if len(is.Audiences) == 0 {
			add("%s.Audiences: at least one audience is required", p)
		}
		for j, a := range is.Audiences {
			if a == "" {
				add("%s.Audiences[%d]: empty audience", p, j)
			}
		}
		if len(is.Algorithms) == 0 {
			add("%s.Algorithms: at least one algorithm must be pinned", p)
		}
		var algs []jose.SignatureAlgorithm
		for j, a := range is.Algorithms {
			alg := jose.SignatureAlgorithm(a)
			switch {
			case strings.EqualFold(a, "none"):
				add("%s.Algorithms[%d]: none is never accepted", p, j)
			case strings.HasPrefix(strings.ToUpper(a), "HS"):
				add("%s.Algorithms[%d]: %s is symmetric; only asymmetric algorithms are accepted (keys come from a public JWKS)", p, j, a)
			case !slices.Contains(supportedAlgorithms, alg):
				add("%s.Algorithms[%d]: unknown algorithm %q (want one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", p, j, a)
			case slices.Contains(algs, alg):
				add("%s.Algorithms[%d]: %s is listed twice", p, j, a)
			default:
				algs = append(algs, alg)
				if !slices.Contains(union, alg) {
					union = append(union, alg)
				}
			}
		}
		issuers[is.Issuer] = &issuerState{
			issuer:     is.Issuer,
			audiences:  slices.Clone(is.Audiences),
			algorithms: algs,
			requireAT:  is.RequireAccessTokenType,
			keys: &keySet{
				issuer:     is.Issuer,
				url:        is.JWKSURL,
				client:     o.HTTPClient,
				now:        o.Now,
				minRefetch: o.MinRefetch,
				refresh:    o.RefreshInterval,
				timeout:    o.FetchTimeout,
				logger:     o.Logger,
			},
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, errors.New("token options:\n" + strings.Join(problems, "\n"))
	}

	v := &Verifier{
		issuers:       issuers,
		rejected:      rejected,
		algorithms:    union,
		leeway:        o.Leeway,
		maxAge:        o.MaxAge,
		refresh:       o.RefreshInterval,
		maxTokenBytes: o.MaxTokenBytes,
		now:           o.Now,
	}
	if o.CacheSize > 0 {
		v.cache = newTokenCache(o.CacheSize)
	}
	return v, nil
}

func setDuration(d *time.Duration, def time.Duration, name string, add func(string, ...any)) {
	switch {
	case *d == 0:
		*d = def
	case *d < 0:
		add("%s: %v is negative", name, *d)
	}
}

// jwksURLAllowed accepts https URLs, and http URLs whose host is a loopback
// IP literal or "localhost".
func jwksURLAllowed(u *url.URL) bool {
	if u.Host == "" || u.User != nil {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		if strings.EqualFold(h, "localhost") {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	return false
}

// defaultHTTPClient follows at most 3 redirects, each to a URL jwksURLAllowed
// accepts, so a redirect cannot downgrade a JWKS fetch to plain http.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("stopped after 3 redirects")
			}
			if !jwksURLAllowed(req.URL) {
				return errors.New("redirect to a URL that is not https refused")
			}
			return nil
		},
	}
}
