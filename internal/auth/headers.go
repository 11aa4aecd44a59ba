package auth

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/internal/assertion"
	"github.com/gatehouse-proxy/gatehouse/internal/oidc"
)

// identityHeaders builds the headers that tell the upstream who the user
// is: user, email, groups, the signed assertion and the route's claim
// headers. Values are cleaned of control characters, so no claim can split
// or forge a header.
func (rt *Route) identityHeaders(p *Principal, host string) []Header {
	g := rt.g
	h := g.opts.Headers
	out := make([]Header, 0, 4+len(rt.opts.IdentityHeaders))
	user := p.Username
	if user == "" {
		user = p.Email
	}
	if user == "" {
		user = p.Subject
	}
	out = append(out, Header{h.User, headerValue(user)})
	if p.Email != "" {
		out = append(out, Header{h.Email, headerValue(p.Email)})
	}
	out = append(out, Header{h.Groups, joinGroups(p.Groups)})
	if g.opts.Signer != nil {
		ident := assertion.Identity{Issuer: p.Issuer, Subject: p.Subject, Email: p.Email, Groups: p.Groups}
		if a, _, err := g.opts.Signer.Get(p.SessionRef, ident, g.originOf(host)); err == nil {
			out = append(out, Header{h.Assertion, a})
		} else {
			g.opts.Log.Error("minting the identity assertion failed", "route", rt.opts.Name, "err", err)
		}
	}
	for name, claim := range rt.opts.IdentityHeaders {
		v, ok := oidc.LookupClaim(p.Claims, claim)
		if !ok {
			continue
		}
		if s := claimString(v); s != "" {
			out = append(out, Header{name, headerValue(s)})
		}
	}
	return out
}

// joinGroups joins group names with commas; a comma or percent sign inside
// a name is percent-encoded, so the list splits back unambiguously.
func joinGroups(groups []string) string {
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteByte(',')
		}
		for j := 0; j < len(g); j++ {
			switch c := g[j]; {
			case c == ',':
				b.WriteString("%2C")
			case c == '%':
				b.WriteString("%25")
			case c < 0x20 || c == 0x7f:
				b.WriteByte(' ')
			default:
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// claimString renders a claim for a header: strings as they are, numbers
// and booleans in JSON form, lists of those joined with commas.
func claimString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			if s := claimString(e); s != "" {
				parts = append(parts, s)
			}
		}
		return joinGroups(parts)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// headerValue replaces control characters (CR, LF, NUL, ...) with spaces
// and bounds the length.
func headerValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			clean = false
			break
		}
	}
	if !clean {
		b := []byte(s)
		for i, c := range b {
			if c < 0x20 && c != '\t' || c == 0x7f {
				b[i] = ' '
			}
		}
		s = string(b)
	}
	return truncate(s, 4096)
}

// StripCookies removes gatehouse's cookies (the session cookie and login
// flow cookies, under either name form) from a Cookie header value, so the
// upstream never receives them. It returns the header unchanged when none
// is present.
func (g *Gate) StripCookies(header string) string {
	return stripCookies(header, g.opts.CookieName)
}

func stripCookies(header, cookieName string) string {
	if !strings.Contains(header, cookieName) && !strings.Contains(header, flowCookieBase) {
		return header
	}
	return filterCookies(header, func(name string) bool { return ownCookie(name, cookieName) })
}

// filterCookies returns a Cookie header value without the cookies that
// drop reports true for (by name), "" when none is left.
func filterCookies(header string, drop func(name string) bool) string {
	var b strings.Builder
	for rest := header; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ";")
		part = strings.TrimSpace(part)
		name, _, _ := strings.Cut(part, "=")
		if part == "" || drop(strings.TrimSpace(name)) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(part)
	}
	return b.String()
}

// setCookieHeader sets h's Cookie header to v, or removes it when v is
// empty.
func setCookieHeader(h http.Header, v string) {
	if v == "" {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{v}
}

// ownCookie reports whether a cookie name is one of gatehouse's.
func ownCookie(name, cookieName string) bool {
	name = strings.TrimPrefix(name, "__Host-")
	return name == cookieName || strings.HasPrefix(name, flowCookieBase)
}

func (g *Gate) ownCookie(name string) bool { return ownCookie(name, g.opts.CookieName) }

// OwnCookie reports whether name (from a Set-Cookie of the upstream) is
// one of gatehouse's cookie names, which an upstream may never set.
func (g *Gate) OwnCookie(name string) bool { return g.ownCookie(name) }
