package oidc

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxReturnToLen is the longest return_to value ReturnTo accepts, in bytes.
// Longer values are rejected rather than truncated.
const MaxReturnToLen = 2048

// ErrUnsafeReturnTo is wrapped by every error ReturnTo returns for a
// client-supplied value it refuses. The caller falls back to origin + "/".
var ErrUnsafeReturnTo = errors.New("unsafe return_to")

// ErrInvalidOrigin is wrapped by the error ReturnTo returns when origin or an
// allowed origin (both from configuration) is not a bare http or https
// origin. It is a configuration bug, not an attack.
var ErrInvalidOrigin = errors.New("invalid origin")

func unsafe(reason string) error {
	return fmt.Errorf("return_to: %s: %w", reason, ErrUnsafeReturnTo)
}

// ReturnTo validates where to send a user after login. raw is what the
// client supplied (a query parameter, or the original request URL gatehouse
// recorded); origin is the gatehouse origin of the route the login was for
// ("https://app.example.com", from configuration — never from Host or
// X-Forwarded-Host). allowed is an optional list of extra allowed origins.
// It returns the safe target to redirect to (always absolute, same origin or
// allow-listed) or an error; on error the caller falls back to origin + "/".
//
// ReturnTo accepts exactly two shapes:
//
//   - a path-absolute reference: "/" alone, or "/" followed by a character
//     other than "/" and "\", resolved against origin;
//   - an absolute http or https URL written as scheme "://" authority, whose
//     scheme, host (case-insensitive) and port (default ports normalized)
//     equal origin or one of allowed exactly, with no userinfo.
//
// Everything else is refused, and the check is deliberately stricter than
// RFC 3986, because the browser parses the result with the WHATWG URL
// rules: it strips tabs and newlines, treats "\" as "/" and "https:host" as
// an authority. So raw may not contain control characters, whitespace,
// backslashes or non-ASCII bytes anywhere (a browser sends non-ASCII paths
// percent-encoded, so a recorded request URL never needs them). The first
// path segment, decoded once, may not contain "/", "\", "%" (double
// encoding), whitespace other than a space, or a Unicode lookalike slash, so no decoding step downstream can
// turn the path into a scheme-relative "//host". The decoded path may not
// contain control characters, and the normalized path may not start with
// "//".
//
// The result is re-serialized from the parsed parts, never the raw input:
// the scheme and host are the configured origin's, dot segments are
// removed, the query is kept (re-escaped) and the fragment is dropped.
func ReturnTo(raw, origin string, allowed []string) (string, error) {
	base, err := parseOrigin(origin)
	if err != nil {
		return "", err
	}
	if raw == "" {
		return "", unsafe("empty")
	}
	if len(raw) > MaxReturnToLen {
		return "", unsafe("too long")
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c == '\\' || c >= 0x7f {
			return "", unsafe("control, whitespace, backslash or non-ASCII character")
		}
	}

	target := base
	var rest string // path, query and fragment, as written
	switch {
	case raw[0] == '/':
		if len(raw) > 1 && raw[1] == '/' {
			return "", unsafe("scheme-relative reference")
		}
		rest = raw
	case hasPrefixFold(raw, "http://"), hasPrefixFold(raw, "https://"):
		scheme, after, _ := strings.Cut(raw, "://")
		authority := after
		if i := strings.IndexAny(after, "/?#"); i >= 0 {
			authority, rest = after[:i], after[i:]
		}
		// Go's parser would decode a percent-encoded host and split
		// userinfo off at the last "@"; browsers do both differently.
		// Neither belongs in a return_to, so refuse before parsing.
		if authority == "" {
			return "", unsafe("empty host")
		}
		if strings.ContainsAny(authority, "@%") {
			return "", unsafe("userinfo or percent-encoding in authority")
		}
		u, err := url.Parse(strings.ToLower(scheme) + "://" + authority)
		if err != nil || u.User != nil || u.Host == "" {
			return "", unsafe("malformed authority")
		}
		o, ok := canonicalOrigin(u)
		if !ok {
			return "", unsafe("malformed authority")
		}
		if o != base {
			if !isAllowed(o, allowed) {
				return "", unsafe("origin not allowed")
			}
			target = o
		}
		if rest == "" {
			rest = "/"
		}
	default:
		return "", unsafe("not a path-absolute reference or http(s) URL")
	}

	// rest starts with "/", "?" or "#". A path that is empty is "/".
	ref, err := url.Parse(rest)
	if err != nil || ref.Scheme != "" || ref.Host != "" || ref.User != nil || ref.Opaque != "" {
		return "", unsafe("malformed path")
	}
	if err := checkPath(ref); err != nil {
		return "", err
	}

	b := &url.URL{Scheme: target.scheme, Host: target.host, Path: "/"}
	res := b.ResolveReference(&url.URL{Path: ref.Path, RawPath: ref.RawPath})
	path := res.EscapedPath()
	if path == "" {
		path = "/"
	}
	// Dot-segment removal can turn "/..//evil.com" into "//evil.com". The
	// result is absolute, so it is still safe, but a consumer that strips
	// the origin would get a scheme-relative reference: refuse it.
	if strings.HasPrefix(path, "//") || path[0] != '/' {
		return "", unsafe("path normalizes to a scheme-relative reference")
	}
	// Dot segments can also bring a later segment to the front ("/./%2F"):
	// the first-segment rules hold for the result too, so the output is
	// accepted again as it is.
	if err := checkFirstSegment(path); err != nil {
		return "", err
	}
	s := target.scheme + "://" + target.host + path
	if q := escapeQuery(ref.RawQuery); q != "" {
		s += "?" + q
	}
	return s, nil
}

// checkPath applies the decode-once rules to ref's path.
func checkPath(ref *url.URL) error {
	p := ref.EscapedPath()
	if p == "" {
		return nil // query only, resolved to "/"
	}
	if p[0] != '/' {
		return unsafe("path is not absolute")
	}
	// ref.Path is the path decoded once (url.Parse rejects bad escapes).
	for _, r := range ref.Path {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			return unsafe("encoded control character in path")
		}
	}
	return checkFirstSegment(p)
}

// checkFirstSegment applies the first-segment rules to an escaped path
// that starts with "/".
func checkFirstSegment(p string) error {
	seg, _, _ := strings.Cut(p[1:], "/")
	dec, err := url.PathUnescape(seg)
	if err != nil {
		return unsafe("malformed path")
	}
	if !utf8.ValidString(dec) {
		return unsafe("encoded invalid UTF-8 in first path segment")
	}
	for _, r := range dec {
		switch r {
		case '/', '\\', '%', // encoded separator or double encoding
			'\u2044', '\u2215', '\u29f8', '\uff0f', '\uff3c', '\u2216', '\u29f9', '\ufe68': // lookalike slashes
			return unsafe("encoded separator or double encoding in first path segment")
		}
		if r < ' ' || r == 0x7f || unicode.IsSpace(r) && r != ' ' {
			return unsafe("encoded control or whitespace character in first path segment")
		}
	}
	return nil
}

// webOrigin is a canonical http(s) origin: lower-case scheme and host, port
// only when it is not the scheme's default.
type webOrigin struct {
	scheme string
	host   string // host[:port], IPv6 literals in brackets
}

// canonicalOrigin returns the canonical origin of u's scheme and host.
func canonicalOrigin(u *url.URL) (webOrigin, bool) {
	scheme := strings.ToLower(u.Scheme)
	var def string
	switch scheme {
	case "http":
		def = "80"
	case "https":
		def = "443"
	default:
		return webOrigin{}, false
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return webOrigin{}, false
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" && port != def {
		host += ":" + port
	}
	return webOrigin{scheme: scheme, host: host}, true
}

// parseOrigin parses a configured origin such as "https://app.example.com"
// or "http://127.0.0.1:8080". A trailing "/" is tolerated; any other path,
// a query, a fragment or userinfo is an error.
func parseOrigin(s string) (webOrigin, error) {
	u, err := url.Parse(s)
	if err != nil {
		return webOrigin{}, fmt.Errorf("parsing origin %q: %w", s, ErrInvalidOrigin)
	}
	o, ok := canonicalOrigin(u)
	if !ok || u.User != nil || u.Opaque != "" || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "\\%@ \t\r\n") {
		return webOrigin{}, fmt.Errorf("origin %q: %w", s, ErrInvalidOrigin)
	}
	return o, nil
}

// isAllowed reports whether o is one of allowed. Unparseable entries never
// match.
func isAllowed(o webOrigin, allowed []string) bool {
	for _, a := range allowed {
		if ao, err := parseOrigin(a); err == nil && ao == o {
			return true
		}
	}
	return false
}

// escapeQuery re-serializes a raw query: it keeps RFC 3986 query characters
// and valid percent-escapes and percent-encodes everything else, including a
// "%" that does not start an escape.
func escapeQuery(q string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '%' && i+2 < len(q) && isHex(q[i+1]) && isHex(q[i+2]):
			b.WriteByte(c)
		case c != '%' && isQueryChar(c):
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isQueryChar reports whether c may appear unescaped in a query
// (RFC 3986 §3.4: pchar / "/" / "?").
func isQueryChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
