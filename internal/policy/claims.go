package policy

import (
	"strconv"
	"strings"
)

// claimCond is one compiled entry of Rule.Claims.
type claimCond struct {
	name   string   // the full claim name, tried first as a top-level key
	path   []string // name split at ".", walked when there is no such key; nil without a dot
	values map[string]struct{}
	// numbers holds the accepted values that parse as numbers, so that a
	// JSON number claim (float64) can match without formatting it.
	numbers map[float64]struct{}
}

func newClaimCond(name string, values []string) claimCond {
	c := claimCond{name: name, values: make(map[string]struct{}, len(values))}
	if strings.Contains(name, ".") {
		c.path = strings.Split(name, ".")
	}
	for _, v := range values {
		c.values[v] = struct{}{}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			if c.numbers == nil {
				c.numbers = make(map[float64]struct{})
			}
			c.numbers[f] = struct{}{}
		}
	}
	return c
}

// match reports whether the claims hold an accepted value for c.
func (c *claimCond) match(claims map[string]any) bool {
	v, ok := claims[c.name]
	if !ok && c.path != nil {
		v, ok = lookupPath(claims, c.path)
	}
	return ok && c.valueMatch(v, true)
}

// lookupPath walks nested objects along path.
func lookupPath(claims map[string]any, path []string) (any, bool) {
	var cur any = claims
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// valueMatch matches one claim value; lists are searched one level deep
// (allowList), which is what JSON claims such as "roles" need.
func (c *claimCond) valueMatch(v any, allowList bool) bool {
	switch v := v.(type) {
	case string:
		_, ok := c.values[v]
		return ok
	case bool:
		_, ok := c.values[strconv.FormatBool(v)]
		return ok
	case float64:
		_, ok := c.numbers[v]
		return ok
	case int:
		_, ok := c.numbers[float64(v)]
		return ok
	case int64:
		_, ok := c.numbers[float64(v)]
		return ok
	case []string:
		if !allowList {
			return false
		}
		for _, s := range v {
			if _, ok := c.values[s]; ok {
				return true
			}
		}
	case []any:
		if !allowList {
			return false
		}
		for _, e := range v {
			if c.valueMatch(e, false) {
				return true
			}
		}
	}
	return false
}
