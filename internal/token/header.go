package token

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4/json"
)

// b64 decodes base64url without padding and refuses non-zero trailing bits.
var b64 = base64.RawURLEncoding.Strict()

// b64Value maps a base64url alphabet byte to its 6-bit value and every other
// byte to -1.
var b64Value = func() (t [256]int8) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = -1
	}
	for i := range len(alphabet) {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

// precheck runs before any parsing. It enforces the length cap and the shape
// ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ (compact JWS only: no JSON
// serialization, no five-part JWE, no whitespace or padding), and refuses
// base64url segments with a length no encoder produces or with non-zero
// trailing bits. With those gone, every token has exactly one spelling, so the
// raw string is a canonical key for the verified-token cache (RFC 7515 leaves
// decoders free to ignore trailing bits; go-jose does).
func precheck(raw string, maxBytes int) error {
	if len(raw) > maxBytes {
		return fmt.Errorf("%w: longer than %d bytes", ErrTooLarge, maxBytes)
	}
	if !compactShape(raw) {
		return fmt.Errorf("%w: not a JWS compact serialization", ErrMalformed)
	}
	i := strings.IndexByte(raw, '.')
	j := i + 1 + strings.IndexByte(raw[i+1:], '.')
	if !canonicalSegment(raw[:i]) || !canonicalSegment(raw[i+1:j]) || !canonicalSegment(raw[j+1:]) {
		return fmt.Errorf("%w: non-canonical base64url", ErrMalformed)
	}
	return nil
}

// compactShape reports whether s matches
// ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ (FuzzPrecheck checks it
// against that regular expression).
func compactShape(s string) bool {
	dots, segLen := 0, 0
	for i := range len(s) {
		c := s[i]
		if c == '.' {
			if segLen == 0 || dots == 2 {
				return false
			}
			dots++
			segLen = 0
			continue
		}
		if b64Value[c] < 0 {
			return false
		}
		segLen++
	}
	return dots == 2 && segLen > 0
}

// canonicalSegment reports whether an unpadded base64url segment (alphabet
// already checked) has a possible length and zero trailing bits.
func canonicalSegment(s string) bool {
	switch len(s) % 4 {
	case 1:
		return false
	case 2:
		return b64Value[s[len(s)-1]]&0x0f == 0
	case 3:
		return b64Value[s[len(s)-1]]&0x03 == 0
	}
	return true
}

// forbiddenHeaders are JOSE header parameters that make gatehouse refuse a
// token outright instead of ignoring them:
//   - jwk, jku, x5u, x5c name or carry a key; keys come only from the
//     configured JWKS (RFC 8725 §3.10), and refusing such tokens makes an
//     attempt visible in the audit record instead of silently ignored.
//   - crit marks extensions that must be understood; gatehouse understands
//     none (RFC 7515 §4.1.11).
//   - b64 changes the signing input (RFC 7797); go-jose honours it even
//     without crit.
//   - enc and zip belong to JWE (RFC 7516), never to a JWS access token.
var forbiddenHeaders = []string{"jwk", "jku", "x5u", "x5c", "crit", "b64", "enc", "zip"}

// header is what Verify reads from the JOSE header before go-jose parses it.
type header struct {
	alg    string
	kid    string
	typ    string
	hasTyp bool
}

// parseHeader decodes the protected header segment with go-jose's strict JSON
// (duplicate names refused) and refuses forbidden parameters before go-jose
// would parse them (x5c, for instance, is parsed into certificates).
func parseHeader(seg string) (header, error) {
	var h header
	b, err := b64.DecodeString(seg)
	if err != nil {
		return h, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return h, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	for _, name := range forbiddenHeaders {
		if _, ok := m[name]; ok {
			return h, fmt.Errorf("%w: %s header parameter", ErrHeader, name)
		}
	}
	if err := headerString(m, "alg", &h.alg); err != nil {
		return h, err
	}
	if h.alg == "" {
		return h, fmt.Errorf("%w: no alg", ErrMalformed)
	}
	if err := headerString(m, "kid", &h.kid); err != nil {
		return h, err
	}
	if len(h.kid) > MaxKIDBytes {
		return h, fmt.Errorf("%w: kid longer than %d bytes", ErrHeader, MaxKIDBytes)
	}
	if _, h.hasTyp = m["typ"]; h.hasTyp {
		if err := headerString(m, "typ", &h.typ); err != nil {
			return h, err
		}
	}
	return h, nil
}

func headerString(m map[string]json.RawMessage, name string, dst *string) error {
	v, ok := m[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("%w: %s header is not a string", ErrMalformed, name)
	}
	return nil
}

// tokenKind is what the typ header says a token is.
type tokenKind int

const (
	// kindGeneric: typ absent or JWT. An access token only if its claims do
	// not mark it as an ID or logout token.
	kindGeneric tokenKind = iota + 1
	// kindAccess: typ at+jwt (RFC 9068 §2.1).
	kindAccess
)

// classifyTyp applies the header half of the token-type rule. typ is compared
// case-insensitively with an optional "application/" prefix, as media types
// are (RFC 7515 §4.1.9). Any typ other than at+jwt or JWT is refused:
// logout+jwt, secevent+jwt, dpop+jwt, gatehouse's own assertion type, ...
func classifyTyp(h header) (tokenKind, error) {
	if !h.hasTyp {
		return kindGeneric, nil
	}
	t := h.typ
	if len(t) > len("application/") && strings.EqualFold(t[:len("application/")], "application/") {
		t = t[len("application/"):]
	}
	switch {
	case strings.EqualFold(t, "at+jwt"):
		return kindAccess, nil
	case strings.EqualFold(t, "JWT"):
		return kindGeneric, nil
	}
	return 0, fmt.Errorf("%w: typ is neither at+jwt nor JWT", ErrTokenType)
}
