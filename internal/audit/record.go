// Package audit produces gatehouse's access audit stream: exactly one
// structured JSON record per request, separate from the operator log.
//
// [Handler] is the only way the proxy emits records. It wraps the whole request
// path, puts a [Record] in the request context for inner handlers to fill in
// ([FromContext]), and emits it from a deferred function, so that allowed,
// denied, failed and panicking requests all produce exactly one record. A
// [Logger] encodes records with [Record.AppendJSON] and writes them, one per
// line, to stdout, stderr or a file that can be rotated.
//
// A record never contains a query string, a cookie, an Authorization header, a
// token or a secret, and its encoding escapes every control character so that
// no field can forge or split a log line. docs/audit.md is the operator's
// reference for the format.
package audit

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// Decision values for [Record.Decision].
const (
	// DecisionAllow means the request was forwarded or served.
	DecisionAllow = "allow"
	// DecisionDeny means policy or authentication refused the request.
	DecisionDeny = "deny"
	// DecisionError means gatehouse could not decide or could not serve the
	// request: a malformed request, an upstream failure, a panic.
	DecisionError = "error"
	// DecisionRedirect means the client was sent elsewhere, usually to log in.
	DecisionRedirect = "redirect"
)

// Reason codes for [Record.Reason] that this package sets, or that more
// than one package sets. Reasons are kebab-case; each is defined where it
// is decided (the proxy's in package proxy, the upstream's in package
// upstream, the policy's in package policy).
const (
	// ReasonClientGone means the client went away before the response was
	// complete; the status is 499.
	ReasonClientGone = "client-gone"
	// ReasonPanic means a handler panicked; Handler answered 500 if nothing had
	// been written yet.
	ReasonPanic = "panic"
	// ReasonAborted means a handler aborted the response with
	// http.ErrAbortHandler, as httputil.ReverseProxy does when copying a
	// response body fails midway. Handler sets it only if no reason was set.
	ReasonAborted = "aborted"
	// ReasonAuditUnavailable means the audit sink was failing, so Handler
	// refused the request with 503 instead of serving it unaudited.
	ReasonAuditUnavailable = "audit-unavailable"
)

// Record is one access: one request and the decision gatehouse made about it.
// docs/audit.md describes every field as it appears in the JSON encoding.
//
// Inside [Handler], the Record for a request comes from [FromContext]; Handler
// fills in the request line, status, bytes and timing, and inner handlers fill
// in the route, identity, decision and reason. Records are pooled: a handler
// must not keep a *Record after it returns.
type Record struct {
	// Time is when the request started. Encoded in UTC with milliseconds.
	Time time.Time
	// RequestID identifies the request across gatehouse and upstream logs.
	RequestID string
	// ClientIP is the client's address. Handler sets it from
	// http.Request.RemoteAddr, which the PROXY protocol listener has already
	// replaced with the client's; the proxy may overwrite it.
	ClientIP netip.Addr
	// Method is the request method.
	Method string
	// Host is the canonical host. Handler sets the raw Host header as a
	// default; the proxy overwrites it with the canonical value.
	Host string
	// Path is the canonical path, never the query. Handler sets the raw
	// URL path as a default; the proxy overwrites it with the canonical value.
	Path string
	// Route is the name of the route that matched, if any.
	Route string
	// Upstream is the name of the upstream pool the route forwards to.
	Upstream string
	// Target is the upstream target chosen from the pool, as
	// scheme://host:port.
	Target string
	// AuthMethod is how the identity was established: "" (anonymous),
	// "session", "bearer" and so on, as defined by the identity package.
	AuthMethod string
	// Issuer, Subject and Email identify the authenticated user, when there
	// is one.
	Issuer, Subject, Email string
	// Groups are the user's groups as used by policy.
	Groups []string
	// Decision is one of DecisionAllow, DecisionDeny, DecisionError and
	// DecisionRedirect. Handler sets DecisionError when it is empty and the
	// status is 500 or above.
	Decision string
	// Rule is the name of the policy rule that decided, if any.
	Rule string
	// Reason is a kebab-case reason code such as ReasonPanic.
	Reason string
	// Status is the HTTP status sent; 499 when the client went away.
	Status int
	// Bytes is the number of response body bytes written.
	Bytes int64
	// Duration is the time from the start of the request until Handler
	// emitted the record.
	Duration time.Duration
	// UpstreamDuration is the time spent waiting on the upstream; zero if
	// there was no upstream call.
	UpstreamDuration time.Duration
	// TLS reports whether the request arrived over TLS.
	TLS bool
	// Proto is the protocol version, such as "HTTP/1.1" or "HTTP/2.0".
	Proto string
	// Via says how the request reached gatehouse when it was not proxied:
	// ViaSPOE for a verdict asked by HAProxy's SPOE filter, ViaForwardAuth
	// for a forward-auth subrequest. Empty for proxied requests.
	Via string
}

// Values of Record.Via.
const (
	ViaSPOE        = "spoe"
	ViaForwardAuth = "forward-auth"
)

// AppendJSON appends r to b as one JSON object, without a trailing newline,
// and returns the extended buffer. It allocates nothing when b has room.
//
// The keys are snake_case, in a fixed order. time, request_id, client_ip,
// method, host, path, decision, status, bytes, duration_ms and tls are always
// present; the other strings, groups and upstream_ms are omitted when empty or
// zero. Strings are escaped so that the output is a single line that no field
// can break out of: quotes and backslashes are escaped, every control
// character (C0, DEL and C1) is written as \u00XX, U+2028, U+2029 and the
// Unicode bidirectional controls are escaped, and invalid UTF-8 becomes U+FFFD.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","request_id":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"client_ip":`...)
	b = appendAddr(b, r.ClientIP)
	b = append(b, `,"method":`...)
	b = appendString(b, r.Method)
	b = append(b, `,"host":`...)
	b = appendString(b, r.Host)
	b = append(b, `,"path":`...)
	b = appendString(b, r.Path)
	b = appendOptional(b, `,"route":`, r.Route)
	b = appendOptional(b, `,"upstream":`, r.Upstream)
	b = appendOptional(b, `,"target":`, r.Target)
	b = appendOptional(b, `,"auth_method":`, r.AuthMethod)
	b = appendOptional(b, `,"issuer":`, r.Issuer)
	b = appendOptional(b, `,"subject":`, r.Subject)
	b = appendOptional(b, `,"email":`, r.Email)
	if len(r.Groups) > 0 {
		b = append(b, `,"groups":[`...)
		for i, g := range r.Groups {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, g)
		}
		b = append(b, ']')
	}
	b = append(b, `,"decision":`...)
	b = appendString(b, r.Decision)
	b = appendOptional(b, `,"rule":`, r.Rule)
	b = appendOptional(b, `,"reason":`, r.Reason)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, r.Duration)
	if r.UpstreamDuration != 0 {
		b = append(b, `,"upstream_ms":`...)
		b = appendMillis(b, r.UpstreamDuration)
	}
	if r.TLS {
		b = append(b, `,"tls":true`...)
	} else {
		b = append(b, `,"tls":false`...)
	}
	b = appendOptional(b, `,"proto":`, r.Proto)
	b = appendOptional(b, `,"via":`, r.Via)
	return append(b, '}')
}

func appendOptional(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, key...)
	return appendString(b, s)
}

// appendAddr appends a quoted IP address; the zero Addr is "". An IPv6 zone
// can hold any bytes (netip.ParseAddr accepts them), so it is escaped.
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, `""`...)
	}
	zone := a.Zone()
	b = append(b, '"')
	b = a.WithZone("").AppendTo(b)
	if zone == "" {
		return append(b, '"')
	}
	b = append(b, '%')
	b = appendEscaped(b, zone)
	return append(b, '"')
}

// appendMillis appends d in milliseconds with exactly three decimals
// (microsecond resolution, truncated toward zero).
func appendMillis(b []byte, d time.Duration) []byte {
	if d < 0 { // a clock step; keep the sign rather than hide it
		b = append(b, '-')
		d = -d
	}
	us := d.Microseconds()
	b = strconv.AppendInt(b, us/1e3, 10)
	frac := us % 1e3
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a quoted JSON string, escaped as described on
// AppendJSON.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped appends the escaped contents of a JSON string, without quotes.
func appendEscaped(b []byte, s string) []byte {
	start := 0 // s[start:i] is pending, unescaped output
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
		case r <= 0x9f: // C1 control characters U+0080..U+009F
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xf])
		case needsEscape(r):
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', hexDigits[r>>12], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(b, s[start:]...)
}

// needsEscape reports whether a non-ASCII rune above U+009F is escaped: the
// line and paragraph separators, which some JSON and JavaScript consumers
// treat as line breaks, and the bidirectional formatting controls, which can
// make a log line display differently from what it contains.
func needsEscape(r rune) bool {
	switch {
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return true
	case 0x202a <= r && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return true
	case 0x2066 <= r && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	case r == 0x200e, r == 0x200f, r == 0x061c: // LRM, RLM, ALM
		return true
	}
	return false
}
