// Package idheader removes the inbound headers a client could use to forge
// its identity or the request's target, and computes the forwarding headers
// (X-Forwarded-For, the client address, X-Request-Id) that gatehouse sends
// upstream (security-notes §5.1 and invariant I2).
//
// Identity headers are matched in any letter case and with "_" in place of
// "-": Go keeps "x_forwarded_user" as the key "X_forwarded_user", while
// CGI-style environments (PHP, Rack, WSGI) map both spellings to the same
// HTTP_X_FORWARDED_USER variable, so an upstream would read the forged one
// (the GHSA-vjrc class; HAProxy's http-restrict-req-hdr-names defaults to
// preserve, so HAProxy lets them through).
package idheader

import (
	"errors"
	"fmt"
	"net/http"
)

// Options configures a [Stripper].
type Options struct {
	// Names are extra header names gatehouse itself sets (from config, e.g.
	// "X-Gatehouse-User", "X-Custom-Email"); they are stripped too.
	//
	// Each name must be a valid RFC 9110 token. Names that gatehouse handles
	// by trust instead (X-Forwarded-For, X-Forwarded-Proto,
	// X-Forwarded-Host, X-Request-Id) and framing headers (Host,
	// Content-Length, Transfer-Encoding, Connection) are rejected, in any
	// spelling. Names already covered by the built-in list are allowed.
	Names []string
}

// Errors returned by [NewStripper], wrapped with the offending name.
var (
	// ErrInvalidName means a configured name is not a valid header token.
	ErrInvalidName = errors.New("not a valid header name")
	// ErrReservedName means a configured name is one that gatehouse must not
	// strip blindly, such as X-Forwarded-For or Host.
	ErrReservedName = errors.New("header is reserved and cannot be used as an identity header")
)

// identityPrefixes are stripped as prefixes. The trailing "-" is part of the
// prefix: "X-Gatehouse-User" is stripped, "X-Gatehousex" and "X-Gatehouse"
// are not. They are written folded (lower case, "-" for "_").
var identityPrefixes = []string{
	"x-gatehouse-",    // gatehouse's own namespace
	"x-auth-request-", // oauth2-proxy's set_xauthrequest headers
}

// identityNames are stripped by exact (folded) name.
var identityNames = []string{
	// Identity headers read by common upstreams: Grafana's and Gitea's
	// X-WEBAUTH-USER, the oauth2-proxy X-Forwarded-* family, REMOTE_USER
	// bridges.
	"remote-user",
	"x-remote-user",
	"x-remote-email",
	"x-remote-groups",
	"x-forwarded-user",
	"x-forwarded-email",
	"x-forwarded-groups",
	"x-forwarded-preferred-username",
	"x-forwarded-access-token",
	"x-webauth-user",
	// "Original URL" headers: some frameworks route on these instead of the
	// request line (Symfony and Zend before CVE-2018-14773, IIS URL Rewrite,
	// Spring's X-Forwarded-Prefix), so the path policed would not be the path
	// served.
	"x-forwarded-uri",
	"x-original-url",
	"x-original-uri",
	"x-rewrite-url",
	"x-forwarded-prefix",
	"x-forwarded-path",
	// Method overrides: policy must see the method the upstream acts on.
	"x-http-method-override",
	"x-http-method",
	"x-method-override",
	// Client-address headers gatehouse does not honour; it sends its own
	// X-Forwarded-For.
	"x-real-ip",
	"true-client-ip",
	"x-client-ip",
	"x-forwarded-port",
	"x-forwarded-server",
	"forwarded",
	// Scheme and host overrides read by Rails/Rack, Django and others in
	// place of X-Forwarded-Proto and Host; gatehouse sets only the standard
	// pair.
	"x-forwarded-scheme",
	"x-forwarded-ssl",
	"front-end-https",
	"x-url-scheme",
	"x-original-host",
}

// reservedNames may not be configured in Options.Names.
var reservedNames = []string{
	"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
	"host", "content-length", "transfer-encoding", "connection",
}

// Stripper removes identity and target-forging headers from inbound
// requests. A Stripper is immutable and safe for concurrent use.
type Stripper struct {
	// byLen[n] holds the folded exact names of length n.
	byLen [][]string
	// prefixes holds the folded prefixes.
	prefixes []string
	// first[c] is set when some name or prefix starts with the folded byte
	// c, so most keys (Accept, Cookie, Sec-Fetch-*) are ruled out at once.
	first [256]bool
}

// NewStripper returns a Stripper for the built-in header list plus
// opts.Names. It returns an error, listing every bad name, if a name is not a
// valid header token or is reserved (see [Options.Names]).
func NewStripper(opts Options) (*Stripper, error) {
	var errs []error
	names := append([]string(nil), identityNames...)
	for i, n := range opts.Names {
		switch {
		case !validToken(n):
			errs = append(errs, fmt.Errorf("idheader: names[%d] %q: %w", i, n, ErrInvalidName))
		case isReserved(n):
			errs = append(errs, fmt.Errorf("idheader: names[%d] %q: %w", i, n, ErrReservedName))
		default:
			names = append(names, fold(n))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Stripper{prefixes: identityPrefixes}
	for _, p := range identityPrefixes {
		s.first[p[0]] = true
	}
	for _, n := range names {
		s.first[n[0]] = true
		for len(s.byLen) <= len(n) {
			s.byLen = append(s.byLen, nil)
		}
		if !contains(s.byLen[len(n)], n) {
			s.byLen[len(n)] = append(s.byLen[len(n)], n)
		}
	}
	return s, nil
}

// Strip deletes from h every inbound header a client could use to forge
// identity or the request's target, and reports how many keys it removed.
//
// Matching ignores letter case and treats "_" as "-", and looks at every key
// in the map, so keys that Go did not canonicalize (set directly, or
// containing "_") are found too. Deleting a key removes all of its values.
// Strip does not allocate.
func (s *Stripper) Strip(h http.Header) int {
	n := 0
	for k := range h {
		if s.match(k) {
			delete(h, k)
			n++
		}
	}
	return n
}

// match reports whether the header key k is one Strip removes.
func (s *Stripper) match(k string) bool {
	if k == "" || !s.first[foldByte(k[0])] {
		return false
	}
	if len(k) < len(s.byLen) {
		for _, name := range s.byLen[len(k)] {
			if foldEqual(k, name) {
				return true
			}
		}
	}
	for _, p := range s.prefixes {
		if len(k) >= len(p) && foldEqual(k[:len(p)], p) {
			return true
		}
	}
	return false
}

// foldEqual reports whether key, folded, equals folded, which is already in
// folded form and has the same length.
func foldEqual(key, folded string) bool {
	if len(key) != len(folded) {
		return false
	}
	for i := 0; i < len(key); i++ {
		if foldByte(key[i]) != folded[i] {
			return false
		}
	}
	return true
}

// foldByte lower-cases ASCII letters and maps "_" to "-".
func foldByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}

// fold returns the folded form of a header name.
func fold(name string) string {
	b := []byte(name)
	for i, c := range b {
		b[i] = foldByte(c)
	}
	return string(b)
}

func isReserved(name string) bool {
	for _, r := range reservedNames {
		if foldEqual(name, r) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// validToken reports whether s is an RFC 9110 §5.6.2 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '!', c == '#', c == '$', c == '%', c == '&', c == '\'', c == '*',
			c == '+', c == '-', c == '.', c == '^', c == '_', c == '`', c == '|', c == '~':
		default:
			return false
		}
	}
	return true
}
