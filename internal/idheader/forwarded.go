package idheader

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"sync/atomic"
)

// ForwardedFor returns the X-Forwarded-For value to send upstream: when
// trusted, the prior values (all inbound X-Forwarded-For lines, comma-joined,
// cleaned of empty elements and whitespace; elements that are not IP
// addresses are dropped) followed by client; otherwise just client.
//
// Addresses are written in their canonical form: ports are removed, zones
// stripped and IPv4-mapped IPv6 addresses unmapped, so nothing but IP
// addresses and ", " separators reaches the upstream. An invalid (zero)
// client is left out; with nothing to write the result is "".
func ForwardedFor(prior []string, client netip.Addr, trusted bool) string {
	client = normalize(client)
	var stack [128]byte
	b := stack[:0]
	if trusted {
		for _, line := range prior {
			for line != "" {
				elem := line
				if i := strings.IndexByte(line, ','); i >= 0 {
					elem, line = line[:i], line[i+1:]
				} else {
					line = ""
				}
				a, ok := parseElement(elem)
				if !ok {
					continue
				}
				if len(b) > 0 {
					b = append(b, ", "...)
				}
				b = a.AppendTo(b)
			}
		}
	}
	if client.IsValid() {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = client.AppendTo(b)
	}
	return string(b)
}

// ClientIP returns the real client address: peer when peer is not trusted;
// otherwise the right-most address in the X-Forwarded-For chain that is not
// trusted (walking right to left), or the left-most one if all are trusted;
// peer when the chain is empty or unparsable.
//
// xff holds the inbound X-Forwarded-For lines in order; together they form one
// comma-separated chain. Empty elements are skipped. The walk stops at the
// first untrusted address, so whatever a client wrote to the left of it
// cannot influence the result; but an unparsable element reached during the
// walk makes the chain unparsable, and ClientIP returns peer rather than
// guess. trusted is called with unmapped, zone-less addresses; a nil trusted
// trusts nothing. The result is unmapped and has no zone.
func ClientIP(peer netip.Addr, xff []string, trusted func(netip.Addr) bool) netip.Addr {
	peer = normalize(peer)
	if !peer.IsValid() || trusted == nil || !trusted(peer) {
		return peer
	}
	var leftmost netip.Addr
	for li := len(xff) - 1; li >= 0; li-- {
		line := xff[li]
		for {
			i := strings.LastIndexByte(line, ',')
			elem := line[i+1:]
			if trimOWS(elem) != "" {
				a, ok := parseElement(elem)
				if !ok {
					return peer
				}
				if !trusted(a) {
					return a
				}
				leftmost = a
			}
			if i < 0 {
				break
			}
			line = line[:i]
		}
	}
	if leftmost.IsValid() {
		return leftmost
	}
	return peer
}

// maxRequestIDLen is the longest X-Request-Id accepted from a trusted proxy.
const maxRequestIDLen = 128

// ValidRequestID reports whether s is acceptable as an inbound X-Request-Id
// from a trusted proxy: 1..128 bytes of [A-Za-z0-9._:-]. The set excludes
// anything that could break out of a log field or header (spaces, quotes,
// control bytes, "," and ";").
func ValidRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// parseElement parses one X-Forwarded-For element: an IPv4 or IPv6 address,
// optionally with a port ("1.2.3.4:5678", "[::1]:80"), surrounded by
// optional spaces and tabs. An unbracketed IPv6 address is read without a
// port. The result is normalized.
func parseElement(s string) (netip.Addr, bool) {
	s = trimOWS(s)
	if s == "" {
		return netip.Addr{}, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() {
			return netip.Addr{}, false
		}
		if rest := s[end+1:]; rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
			return netip.Addr{}, false
		}
		return normalize(a), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return normalize(a), true
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || !validPort(s[i+1:]) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s[:i])
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// validPort reports whether p is a decimal number no greater than 65535,
// as netip.ParseAddrPort accepts it (leading zeros allowed).
func validPort(p string) bool {
	if p == "" {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		if n = n*10 + int(p[i]-'0'); n > 65535 {
			return false
		}
	}
	return true
}

// normalize strips the zone and unmaps IPv4-mapped IPv6 addresses.
func normalize(a netip.Addr) netip.Addr {
	return a.WithZone("").Unmap()
}

// trimOWS removes leading and trailing spaces and tabs (RFC 9110 §5.6.3).
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// RequestIDs makes request IDs: a random per-process prefix and a counter,
// so IDs are unique without a random read per request. Make one with
// NewRequestIDs.
type RequestIDs struct {
	prefix [8]byte
	n      atomic.Uint64
}

// NewRequestIDs returns a generator with a fresh random prefix.
func NewRequestIDs() *RequestIDs {
	g := &RequestIDs{}
	rand.Read(g.prefix[:])
	return g
}

// Next returns a new ID: 32 lowercase hex digits, which ValidRequestID
// accepts.
func (g *RequestIDs) Next() string {
	var b [16]byte
	copy(b[:8], g.prefix[:])
	binary.BigEndian.PutUint64(b[8:], g.n.Add(1))
	var out [32]byte
	hex.Encode(out[:], b[:])
	return string(out[:])
}
