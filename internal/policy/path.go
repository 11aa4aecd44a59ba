package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// pathPattern is a compiled Paths or Public entry: a segment-boundary prefix
// or a glob.
type pathPattern struct {
	raw string
	// segs is nil for a prefix pattern; for a glob it holds the pattern's
	// segments after the leading "/".
	segs []string
}

// Glob errors, wrapped in a [FieldError] by Compile.
var (
	ErrEmptyPattern     = errors.New("empty path pattern")
	ErrPatternNotRooted = errors.New(`path pattern must start with "/"`)
	ErrBadGlob          = errors.New("bad glob")
)

// compilePath validates a path pattern. See [Rule.Paths] for the syntax.
func compilePath(raw string) (pathPattern, error) {
	if raw == "" {
		return pathPattern{}, ErrEmptyPattern
	}
	if raw[0] != '/' {
		return pathPattern{}, fmt.Errorf("%q: %w", raw, ErrPatternNotRooted)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x21 || c == 0x7f {
			return pathPattern{}, fmt.Errorf("%q: %w: control character or space at byte %d", raw, ErrBadGlob, i)
		}
	}
	if !utf8.ValidString(raw) {
		return pathPattern{}, fmt.Errorf("%q: %w: invalid UTF-8", raw, ErrBadGlob)
	}
	segs := strings.Split(raw[1:], "/")
	for i, s := range segs {
		// A canonical path has no dot-segments and no empty segments other
		// than a trailing one, so a pattern with them would silently never
		// match.
		if s == "." || s == ".." {
			return pathPattern{}, fmt.Errorf("%q: %w: dot-segment %q never matches a canonical path", raw, ErrBadGlob, s)
		}
		if s == "" && i != len(segs)-1 {
			return pathPattern{}, fmt.Errorf("%q: %w: empty segment never matches a canonical path", raw, ErrBadGlob)
		}
		if s != "**" && strings.Contains(s, "**") {
			return pathPattern{}, fmt.Errorf("%q: %w: \"**\" must be a whole segment", raw, ErrBadGlob)
		}
	}
	if !strings.Contains(raw, "*") {
		return pathPattern{raw: raw}, nil
	}
	return pathPattern{raw: raw, segs: segs}, nil
}

// match reports whether the canonical path matches the pattern.
func (p *pathPattern) match(path string) bool {
	if p.segs == nil {
		return prefixMatch(p.raw, path)
	}
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	return globMatch(p.segs, path[1:])
}

// prefixMatch reports whether path equals prefix or lies below it: "/api"
// covers "/api" and "/api/x" but not "/apix". A prefix ending in "/" covers
// everything that starts with it ("/api/" covers "/api/" and "/api/x", not
// "/api").
func prefixMatch(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// globMatch matches the segments of path (the path without its leading
// "/") against the pattern segments. "**" matches zero or more whole
// segments; any other pattern segment matches exactly one path segment by
// segMatch. It is the classic wildcard algorithm over segments, remembering
// only the last "**": O(len(segs) × segments in path), no recursion, no
// allocation.
func globMatch(segs []string, path string) bool {
	// pos is the start of the next path segment; pos > len(path) means no
	// segments remain. The path "" (from "/") is one empty segment.
	pi, pos := 0, 0
	starPi, starPos := -1, 0
	for pos <= len(path) {
		if pi < len(segs) && segs[pi] == "**" {
			starPi, starPos = pi, pos
			pi++
			continue
		}
		if pi < len(segs) {
			seg, next := segmentAt(path, pos)
			if segMatch(segs[pi], seg) {
				pi++
				pos = next
				continue
			}
		}
		if starPi < 0 {
			return false
		}
		// Let the last "**" absorb one more segment and retry from there.
		_, starPos = segmentAt(path, starPos)
		pi, pos = starPi+1, starPos
	}
	for pi < len(segs) && segs[pi] == "**" {
		pi++
	}
	return pi == len(segs)
}

// segmentAt returns the path segment starting at pos and the start of the
// following one (len(path)+1 when it was the last).
func segmentAt(path string, pos int) (seg string, next int) {
	if i := strings.IndexByte(path[pos:], '/'); i >= 0 {
		return path[pos : pos+i], pos + i + 1
	}
	return path[pos:], len(path) + 1
}

// segMatch matches one path segment against one pattern segment in which
// "*" matches any run of bytes, including none (a segment never contains
// "/", so "*" never crosses one). Same algorithm as globMatch, over bytes.
func segMatch(pat, s string) bool {
	pi, si := 0, 0
	starPi, starSi := -1, 0
	for si < len(s) {
		if pi < len(pat) && pat[pi] == '*' {
			starPi, starSi = pi, si
			pi++
			continue
		}
		if pi < len(pat) && pat[pi] == s[si] {
			pi++
			si++
			continue
		}
		if starPi < 0 {
			return false
		}
		starSi++
		pi, si = starPi+1, starSi
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat)
}
