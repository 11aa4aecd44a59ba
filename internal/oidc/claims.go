package oidc

import (
	"errors"
	"io"
	"strings"

	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// maxClaimsBytes caps a UserInfo response.
const maxClaimsBytes = 64 << 10

// LookupClaim finds a claim by name: the top-level claim of that exact name
// first (some providers use URLs with dots as claim names), then the dotted
// path through nested objects ("realm_access.roles").
func LookupClaim(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	cur := any(claims)
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// stringList reads a groups-like claim: an array of strings (other elements
// skipped) or a single string (Entra ID and some Keycloak mappers send one
// group as a bare string).
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// decodeStrict reads one JSON object with go-jose's JSON decoder, which
// refuses duplicate keys and matches names case-sensitively (encoding/json
// takes the last duplicate and matches case-insensitively:
// security-notes §2.2).
func decodeStrict(r io.Reader) (map[string]any, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxClaimsBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxClaimsBytes {
		return nil, errors.New("response too large")
	}
	var m map[string]any
	if err := josejson.Unmarshal(b, &m); err != nil || m == nil {
		return nil, errors.New("response is not a strict JSON object")
	}
	return m, nil
}

// decodeClaims decodes a verified JWT payload strictly (go-jose's JSON:
// duplicate keys refused, names case-sensitive) into the registered claims
// and the map of all claims.
func decodeClaims(payload []byte) (jwt.Claims, map[string]any, error) {
	var std jwt.Claims
	var all map[string]any
	if josejson.Unmarshal(payload, &std) != nil || josejson.Unmarshal(payload, &all) != nil || all == nil {
		return std, nil, errors.New("claims are not a strict JSON object")
	}
	return std, all, nil
}
