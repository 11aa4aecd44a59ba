package canon

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Errors returned by [Host]. Each is a distinct value for [errors.Is]; none of
// them echoes the input.
var (
	// ErrEmptyHost means the host is the empty string.
	ErrEmptyHost = errors.New("canon: empty host")
	// ErrInvalidHost means the host name or IP literal is malformed: a
	// character outside [A-Za-z0-9._-], an empty or over-long label, an
	// unbracketed IPv6 address, or a bracketed literal that is not a plain
	// IPv6 address (zones are rejected).
	ErrInvalidHost = errors.New("canon: invalid host")
	// ErrInvalidPort means the port after ":" is empty, not decimal, zero or
	// greater than 65535.
	ErrInvalidPort = errors.New("canon: invalid port")
)

// maxHostLen is the longest host name accepted (RFC 1035 §2.3.4, as text
// without the trailing dot).
const maxHostLen = 253

// maxLabelLen is the longest label accepted (RFC 1035 §2.3.4).
const maxLabelLen = 63

// Host returns the canonical host for routing: lower-cased, trailing dot
// removed, default port removed (:80 when !tls, :443 when tls), IPv6 literals
// kept in brackets; error for empty, invalid characters, bad port.
//
// The input is a Host header or URL authority without userinfo, such as
// "App.Example.COM.:443" or "[::1]:8080". Name characters are limited to
// letters, digits, "-", "_" and "." (no percent-encoding, no IDNA: send
// A-labels); each dot-separated label must be 1 to 63 bytes and the name at
// most 253. IPv6 literals are written in their RFC 5952 form, so
// "[0:0::1]" becomes "[::1]". Leading zeros in the port are dropped. IPv4
// addresses are treated as names and kept as written.
//
// A host that is already canonical is returned unchanged without allocating.
func Host(host string, tls bool) (string, error) {
	if host == "" {
		return "", ErrEmptyHost
	}
	name, port, hasPort := host, "", false
	var ip6 [64]byte
	var ip6Len int
	if host[0] == '[' {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return "", ErrInvalidHost
		}
		addr, err := netip.ParseAddr(host[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", ErrInvalidHost
		}
		ip6Len = len(addr.AppendTo(ip6[:0]))
		name = host[:end+1]
		switch rest := host[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			port, hasPort = rest[1:], true
		default:
			return "", ErrInvalidHost
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		name, port, hasPort = host[:i], host[i+1:], true
	}

	clean := true
	if ip6Len > 0 {
		if name[1:len(name)-1] != string(ip6[:ip6Len]) {
			clean = false
		}
	} else {
		var err error
		if name, clean, err = checkName(name); err != nil {
			return "", err
		}
	}

	if hasPort {
		n, err := parsePort(port)
		if err != nil {
			return "", err
		}
		switch {
		case n == 80 && !tls, n == 443 && tls:
			port, clean = "", false
		case port[0] == '0':
			port, clean = strconv.Itoa(n), false
		}
	}
	if clean {
		return host, nil
	}

	var b strings.Builder
	b.Grow(len(name) + 1 + len(port))
	if ip6Len > 0 {
		b.WriteByte('[')
		b.Write(ip6[:ip6Len])
		b.WriteByte(']')
	} else {
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
		}
	}
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	return b.String(), nil
}

// checkName validates a host name or IPv4 address. It returns the name with
// one trailing dot removed and reports whether it was already canonical
// (lower case, no trailing dot).
func checkName(name string) (trimmed string, clean bool, err error) {
	clean = true
	if strings.HasSuffix(name, ".") {
		name, clean = name[:len(name)-1], false
	}
	if name == "" || len(name) > maxHostLen {
		return "", false, ErrInvalidHost
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			label++
		case 'A' <= c && c <= 'Z':
			label++
			clean = false
		case c == '.':
			if label == 0 {
				return "", false, ErrInvalidHost
			}
			label = 0
			continue
		default:
			// Includes ":" (an unbracketed IPv6 address), "%", "@", "[", space
			// and every non-ASCII byte.
			return "", false, ErrInvalidHost
		}
		if label > maxLabelLen {
			return "", false, ErrInvalidHost
		}
	}
	if label == 0 {
		return "", false, ErrInvalidHost
	}
	return name, clean, nil
}

// parsePort parses a decimal port in 1..65535. Up to five digits are
// accepted, so leading zeros cannot be used to make it arbitrarily long.
func parsePort(p string) (int, error) {
	if p == "" || len(p) > 5 {
		return 0, ErrInvalidPort
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, ErrInvalidPort
		}
		n = n*10 + int(c-'0')
	}
	if n == 0 || n > 65535 {
		return 0, ErrInvalidPort
	}
	return n, nil
}
