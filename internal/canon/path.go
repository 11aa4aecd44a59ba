// Package canon computes the single canonical view of a request's path and
// host that gatehouse uses for routing, policy, audit and the upstream
// request (security-notes §5.1, invariant I3).
//
// The point of canonicalization is that the path a policy rule is evaluated
// on is byte-for-byte the path the upstream receives. Anything that different
// upstreams could read in different ways (encoded separators, path
// parameters, backslashes, fragments) is rejected instead of guessed at.
//
// Errors returned by this package are sentinel values that never contain the
// input, so they are cheap to return and safe to show to a client.
package canon

import (
	"errors"
	"strings"
)

// Errors returned by [Path]. Each is a distinct value for [errors.Is]; none of
// them echoes the input.
var (
	// ErrNotAbsolute means the path is empty or does not start with "/".
	ErrNotAbsolute = errors.New("canon: path must start with /")
	// ErrInvalidEscape means a "%" is not followed by two hexadecimal digits.
	ErrInvalidEscape = errors.New("canon: invalid percent-escape in path")
	// ErrEncodedSeparator means the path contains %2F or %5C. Upstreams
	// disagree on whether these separate segments, so gatehouse refuses them.
	ErrEncodedSeparator = errors.New("canon: encoded path separator")
	// ErrControl means the path contains a control byte (0x00-0x1F or 0x7F),
	// raw or percent-encoded.
	ErrControl = errors.New("canon: control character in path")
	// ErrBackslash means the path contains a raw "\", which some servers
	// (IIS, Tomcat on Windows, many frameworks) treat as "/".
	ErrBackslash = errors.New("canon: backslash in path")
	// ErrFragment means the path contains "#", raw or as %23. A fragment is
	// never sent by a conforming client, and %23 is decoded into "#" by some
	// upstreams that then cut the path short.
	ErrFragment = errors.New("canon: fragment marker in path")
	// ErrPathParameter means the path contains a raw ";". Jetty and other
	// servlet containers (Metabase among them) strip ";params" from each
	// segment, so "/admin;x" would be policed as one path and served as
	// another.
	ErrPathParameter = errors.New("canon: path parameter (;) in path")
)

// Byte classes for path characters as they appear in the escaped input.
const (
	clsRaw       = iota // pchar allowed raw: unreserved, sub-delims except ";", ":" and "@"
	clsEncode           // allowed as data but must be percent-encoded in the canonical form
	clsSlash            // "/"
	clsPercent          // "%", start of an escape
	clsControl          // 0x00-0x1F, 0x7F
	clsBackslash        // "\"
	clsHash             // "#"
	clsSemicolon        // ";"
)

// class maps every byte to its class. Bytes not listed (space, '"', "<",
// ">", "?", "[", "]", "^", "`", "{", "|", "}" and 0x80-0xFF) are clsEncode.
var class = func() (t [256]uint8) {
	for i := range t {
		t[i] = clsEncode
	}
	for c := range 256 {
		if isUnreserved(byte(c)) {
			t[c] = clsRaw
		}
	}
	// RFC 3986 §3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@".
	for _, c := range []byte("!$&'()*+,=:@") {
		t[c] = clsRaw
	}
	for c := range 0x20 {
		t[c] = clsControl
	}
	t[0x7f] = clsControl
	t['/'] = clsSlash
	t['%'] = clsPercent
	t['\\'] = clsBackslash
	t['#'] = clsHash
	t[';'] = clsSemicolon
	return t
}()

// isUnreserved reports whether c is an RFC 3986 §2.3 unreserved character.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

const upperHex = "0123456789ABCDEF"

// unhex returns the value of the hexadecimal digit c, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// Path returns the canonical form of an escaped request path, as given by
// url.URL.EscapedPath() or the path part of a request-target.
//
// Path rejects a path that does not start with "/", that contains raw
// control bytes, "\", "#" or ";", a malformed percent-escape, or an escape
// that decodes to "/", "\", "#" or a control byte. Otherwise it decodes
// escapes of unreserved characters, upper-cases the hex digits of the other
// escapes, percent-encodes raw bytes that are not allowed in a path (space,
// quotes, brackets, non-ASCII and the like), resolves "." and ".." segments
// (RFC 3986 §5.2.4, with ".." above the root staying at "/"), and merges
// repeated slashes. A trailing slash is kept.
//
// Empty segments are dropped before ".." is applied, as path.Clean and
// nginx's merge_slashes do, so "/a//../b" becomes "/b" (strict RFC 3986
// would give "/a/b"). Either choice is safe because the result is what the
// upstream receives; this one matches Go's own path cleaning.
//
// A path that is already canonical is returned unchanged without allocating.
// Path is idempotent: Path(p) == p for every p it returns.
func Path(escaped string) (string, error) {
	if escaped == "" || escaped[0] != '/' {
		return "", ErrNotAbsolute
	}
	clean, err := check(escaped)
	if err != nil {
		return "", err
	}
	if clean {
		return escaped, nil
	}
	return rebuild(escaped), nil
}

// check validates s, which starts with "/", and reports whether it is already
// canonical. It scans the whole input, so the error does not depend on
// whether an earlier part needed rewriting.
func check(s string) (clean bool, err error) {
	clean = true
	seg := 1 // start of the current segment
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch class[c] {
		case clsRaw:
		case clsSlash:
			if !cleanSegment(s[seg:i]) {
				clean = false
			}
			seg = i + 1
		case clsPercent:
			if i+2 >= len(s) {
				return false, ErrInvalidEscape
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi < 0 || lo < 0 {
				return false, ErrInvalidEscape
			}
			if err := checkDecoded(byte(hi<<4 | lo)); err != nil { //nolint:gosec // hi, lo < 16
				return false, err
			}
			if isUnreserved(byte(hi<<4|lo)) || s[i+1] >= 'a' || s[i+2] >= 'a' { //nolint:gosec // hi, lo < 16
				clean = false
			}
			i += 2
		case clsEncode:
			clean = false
		case clsControl:
			return false, ErrControl
		case clsBackslash:
			return false, ErrBackslash
		case clsHash:
			return false, ErrFragment
		case clsSemicolon:
			return false, ErrPathParameter
		}
	}
	// The last segment may be empty (a trailing slash) but not a dot-segment.
	if last := s[seg:]; last == "." || last == ".." {
		clean = false
	}
	return clean, nil
}

// cleanSegment reports whether a segment followed by "/" can stay as it is:
// it is neither empty (a "//") nor a raw dot-segment. Escaped dots have
// already marked the path as unclean.
func cleanSegment(seg string) bool {
	return seg != "" && seg != "." && seg != ".."
}

// checkDecoded returns the error for a percent-escape that decodes to v, or
// nil when the escape is allowed.
func checkDecoded(v byte) error {
	switch {
	case v == '/' || v == '\\':
		return ErrEncodedSeparator
	case v < 0x20 || v == 0x7f:
		return ErrControl
	case v == '#':
		return ErrFragment
	}
	return nil
}

// rebuild returns the canonical form of s, which check has accepted.
func rebuild(s string) string {
	buf := make([]byte, 1, len(s)+8)
	buf[0] = '/'
	// starts holds, for each segment on the output stack, the offset in buf
	// where it begins. Every pushed segment is followed by "/", so buf always
	// ends with "/" between segments.
	var stack [16]int
	starts := stack[:0]
	trailing := false
	for i := 1; i <= len(s); {
		end := strings.IndexByte(s[i:], '/')
		if end < 0 {
			end = len(s)
		} else {
			end += i
		}
		start := len(buf)
		buf = appendSegment(buf, s[i:end])
		switch string(buf[start:]) {
		case "", ".":
			buf = buf[:start]
			trailing = true
		case "..":
			buf = buf[:start]
			if n := len(starts); n > 0 {
				buf = buf[:starts[n-1]]
				starts = starts[:n-1]
			}
			trailing = true
		default:
			starts = append(starts, start)
			buf = append(buf, '/')
			trailing = false
		}
		i = end + 1
	}
	if !trailing && len(buf) > 1 {
		buf = buf[:len(buf)-1]
	}
	return string(buf)
}

// appendSegment appends the canonical form of one validated segment.
func appendSegment(buf []byte, seg string) []byte {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch class[c] {
		case clsPercent:
			v := byte(unhex(seg[i+1])<<4 | unhex(seg[i+2])) //nolint:gosec // validated hex digits, < 16
			i += 2
			if isUnreserved(v) {
				buf = append(buf, v)
				continue
			}
			buf = append(buf, '%', upperHex[v>>4], upperHex[v&15])
		case clsEncode:
			buf = append(buf, '%', upperHex[c>>4], upperHex[c&15])
		default: // clsRaw; check rejected every other class.
			buf = append(buf, c)
		}
	}
	return buf
}

// Decode returns the decoded form of a canonical path, for url.URL.Path (the
// canonical form goes to url.URL.RawPath). Decode is meant for the output of
// [Path]; a malformed escape in other input is copied unchanged.
func Decode(canonical string) string {
	n := strings.IndexByte(canonical, '%')
	if n < 0 {
		return canonical
	}
	buf := make([]byte, n, len(canonical))
	copy(buf, canonical[:n])
	for i := n; i < len(canonical); i++ {
		c := canonical[i]
		if c == '%' && i+2 < len(canonical) {
			hi, lo := unhex(canonical[i+1]), unhex(canonical[i+2])
			if hi >= 0 && lo >= 0 {
				buf = append(buf, byte(hi<<4|lo)) //nolint:gosec // hi, lo < 16
				i += 2
				continue
			}
		}
		buf = append(buf, c)
	}
	return string(buf)
}
