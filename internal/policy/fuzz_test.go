package policy

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// FuzzDecide checks that Decide never panics, that an empty policy never
// allows, and that decisions are internally consistent.
func FuzzDecide(f *testing.F) {
	f.Add("GET", "app.example.com", "/api/v1/items", "10.0.0.1", "alice@example.com", true, "staff", "gold")
	f.Add("POST", "", "/admin", "::ffff:203.0.113.9", "a@evil-example.com", true, "Admins", "")
	f.Add("", "", "", "", "", false, "", "")
	f.Add("GET", "x", "/static/a/b/server.key", "192.0.2.1", "@", false, "admins", "true")
	empty := mustCompile(f, Options{})
	full := benchPolicy(f)
	f.Fuzz(func(t *testing.T, method, host, path, addr, email string, verified bool, group, tier string) {
		var in Input
		in.Method, in.Host, in.Path = method, host, path
		in.SourceIP, _ = netip.ParseAddr(addr)
		for _, withID := range []bool{false, true} {
			in.Identity = nil
			if withID {
				in.Identity = &Identity{
					Subject: "s", Email: email, EmailVerified: verified, Groups: []string{group},
					Claims: map[string]any{"tier": tier, "realm_access": map[string]any{"roles": []any{tier, 1.0, nil}}},
				}
			}
			if d := empty.Decide(in); d.Allow || d.NeedLogin || d.Public {
				t.Fatalf("empty policy: Decide(%+v) = %+v", in, d)
			}
			d := full.Decide(in)
			if d.Allow && d.NeedLogin {
				t.Fatalf("Decide(%+v) = %+v: both Allow and NeedLogin", in, d)
			}
			if d.NeedLogin && in.Identity != nil {
				t.Fatalf("Decide(%+v) = %+v: NeedLogin with an identity", in, d)
			}
			if d.Reason == "" {
				t.Fatalf("Decide(%+v) = %+v: no reason", in, d)
			}
			if d.Allow && (len(path) == 0 || path[0] != '/') {
				t.Fatalf("Decide(%+v) = %+v: allowed a non-canonical path", in, d)
			}
			if d2 := full.Decide(in); d2 != d {
				t.Fatalf("Decide not deterministic: %+v then %+v", d, d2)
			}
		}
	})
}

// FuzzGlob compares the glob matcher with a regular expression built from
// the same pattern.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"/api/*", "/api/x"},
		{"/api/**", "/api"},
		{"/**/secret", "/a/b/secret"},
		{"/a/**/b/**/c", "/a/x/b/y/z/c"},
		{"/*.css", "/a/b.css"},
		{"/f*o*o", "/foxoxoo"},
		{"/admin", "/adminx"},
		{"/**", "/"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		pp, err := compilePath(pattern)
		if err != nil {
			return
		}
		got := pp.match(path)
		if len(path) == 0 || path[0] != '/' {
			// Not a canonical path: it must never match; the reference
			// regexp has no opinion (it matches "" against "/**").
			if got {
				t.Fatalf("match(%q, %q) = true for a path without a leading slash", pattern, path)
			}
			return
		}
		re := globRegexp(pattern)
		if want := re.MatchString(path); got != want {
			t.Fatalf("match(%q, %q) = %v, regexp %s says %v", pattern, path, got, re, want)
		}
	})
}

// globRegexp is the reference semantics of a path pattern as a regexp.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`\A`)
	if !strings.Contains(pattern, "*") {
		b.WriteString(regexp.QuoteMeta(pattern))
		if !strings.HasSuffix(pattern, "/") {
			b.WriteString(`(?:/.*)?`)
		} else {
			b.WriteString(`.*`)
		}
		b.WriteString(`\z`)
		return regexp.MustCompile("(?s)" + b.String())
	}
	for _, seg := range strings.Split(pattern[1:], "/") {
		if seg == "**" {
			b.WriteString(`(?:/[^/]*)*`)
			continue
		}
		b.WriteString("/")
		for i, part := range strings.Split(seg, "*") {
			if i > 0 {
				b.WriteString(`[^/]*`)
			}
			b.WriteString(regexp.QuoteMeta(part))
		}
	}
	b.WriteString(`\z`)
	return regexp.MustCompile("(?s)" + b.String())
}
