package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustCompile(t testing.TB, opts Options) *Policy {
	t.Helper()
	p, err := Compile(opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

var (
	alice = &Identity{
		Issuer: "https://idp.example.com", Subject: "alice", Email: "alice@example.com", EmailVerified: true,
		Groups: []string{"staff", "admins"},
		Claims: map[string]any{
			"realm_access":              map[string]any{"roles": []any{"reader", "writer"}},
			"https://example.com/roles": []any{"billing"},
			"tier":                      "gold",
			"level":                     float64(3),
			"mfa":                       true,
		},
	}
	bob = &Identity{Issuer: "https://idp.example.com", Subject: "bob", Email: "bob@example.com", EmailVerified: true, Groups: []string{"staff"}}
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestDenyByDefault(t *testing.T) {
	p := mustCompile(t, Options{})
	for _, in := range []Input{
		{Method: "GET", Path: "/"},
		{Method: "GET", Path: "/", Identity: alice},
		{Method: "POST", Path: "/admin", SourceIP: ip("127.0.0.1"), Identity: alice},
	} {
		got := p.Decide(in)
		want := Decision{Reason: ReasonNoRuleMatched}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Decide(%+v) (-want +got):\n%s", in, diff)
		}
	}
}

func TestDenyRuleWinsOverAllow(t *testing.T) {
	p := mustCompile(t, Options{
		Allow: []Rule{{Name: "staff", Groups: []string{"staff"}}},
		Deny:  []Rule{{Name: "no-admin-writes", Methods: []string{"POST"}, Paths: []string{"/admin"}}},
	})
	got := p.Decide(Input{Method: "POST", Path: "/admin/users", Identity: alice})
	want := Decision{Rule: "no-admin-writes", Reason: ReasonDeniedByRule}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The same rule set still allows what the deny rule does not cover.
	if got := p.Decide(Input{Method: "GET", Path: "/admin/users", Identity: alice}); !got.Allow {
		t.Errorf("GET /admin/users = %+v, want allow", got)
	}
}

func TestPublicPathStillSubjectToDeny(t *testing.T) {
	p := mustCompile(t, Options{
		Public: []string{"/static", "/health"},
		Deny: []Rule{
			{Name: "block-net", SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
			{Name: "no-secret-static", Paths: []string{"/static/**/*.key"}},
		},
	})
	tests := []struct {
		name string
		in   Input
		want Decision
	}{
		{"public", Input{Method: "GET", Path: "/static/app.js", SourceIP: ip("198.51.100.1")}, Decision{Allow: true, Public: true, Reason: ReasonPublic}},
		{"public-denied-by-source", Input{Method: "GET", Path: "/static/app.js", SourceIP: ip("203.0.113.9")}, Decision{Rule: "block-net", Reason: ReasonDeniedByRule}},
		{"public-denied-by-path", Input{Method: "GET", Path: "/static/a/b/server.key"}, Decision{Rule: "no-secret-static", Reason: ReasonDeniedByRule}},
		{"mapped-v4-source-denied", Input{Method: "GET", Path: "/health", SourceIP: ip("::ffff:203.0.113.9")}, Decision{Rule: "block-net", Reason: ReasonDeniedByRule}},
		{"not-public", Input{Method: "GET", Path: "/staticx"}, Decision{Reason: ReasonNoRuleMatched}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, p.Decide(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPublicPathSubjectToIdentityDeny(t *testing.T) {
	// A Deny rule with an identity condition matches only signed-in users,
	// so an anonymous request to a public path is allowed while the denied
	// user is refused.
	p := mustCompile(t, Options{
		Public: []string{"/docs"},
		Deny:   []Rule{{Name: "no-bob", Emails: []string{"bob@example.com"}}},
	})
	if got := p.Decide(Input{Method: "GET", Path: "/docs"}); !got.Allow || !got.Public {
		t.Errorf("anonymous = %+v, want public allow", got)
	}
	want := Decision{Rule: "no-bob", Reason: ReasonDeniedByRule}
	if diff := cmp.Diff(want, p.Decide(Input{Method: "GET", Path: "/docs", Identity: bob})); diff != "" {
		t.Errorf("bob (-want +got):\n%s", diff)
	}
}

func TestPathPrefixNotStringPrefix(t *testing.T) {
	p := mustCompile(t, Options{Allow: []Rule{{Name: "admin", Paths: []string{"/admin"}, Groups: []string{"admins"}}}})
	tests := []struct {
		path  string
		allow bool
	}{
		{"/admin", true},
		{"/admin/", true},
		{"/admin/users", true},
		{"/adminx", false},
		{"/admin-panel", false},
		{"/admin.json", false},
		{"/Admin", false},
		{"/", false},
		{"/x/admin", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := p.Decide(Input{Method: "GET", Path: tt.path, Identity: alice})
			if got.Allow != tt.allow {
				t.Errorf("Decide(%q) = %+v, want Allow=%v", tt.path, got, tt.allow)
			}
			if !tt.allow && got.Reason != ReasonPathDenied {
				t.Errorf("Decide(%q).Reason = %q, want %q", tt.path, got.Reason, ReasonPathDenied)
			}
		})
	}
}

func TestEmailDomainSuffixAttack(t *testing.T) {
	p := mustCompile(t, Options{Allow: []Rule{
		{Name: "corp", EmailDomains: []string{"example.com"}},
		{Name: "partners", EmailDomains: []string{"*.partner.org"}},
	}})
	tests := []struct {
		name  string
		email string
		allow bool
	}{
		{"exact", "a@example.com", true},
		{"exact-upper", "A@EXAMPLE.COM", true},
		{"hyphen-prefix", "a@evil-example.com", false},
		{"glued-prefix", "a@evilexample.com", false},
		{"suffix-appended", "a@example.com.evil.com", false},
		{"subdomain-not-listed", "a@sub.example.com", false},
		{"second-at", "a@example.com@evil.com", false},
		{"at-in-local-part", "example.com@evil.com", false},
		{"trailing-dot", "a@example.com.", false},
		{"no-local-part", "@example.com", false},
		{"kelvin-sign", "a@example.\u212Aom", false},
		{"wildcard-sub", "a@eu.partner.org", true},
		{"wildcard-deep-sub", "a@x.eu.partner.org", true},
		{"wildcard-not-apex", "a@partner.org", false},
		{"wildcard-glued", "a@evilpartner.org", false},
		{"wildcard-empty-label", "a@.partner.org", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := &Identity{Subject: "x", Email: tt.email, EmailVerified: true}
			got := p.Decide(Input{Method: "GET", Path: "/", Identity: id})
			if got.Allow != tt.allow {
				t.Errorf("email %q: %+v, want Allow=%v", tt.email, got, tt.allow)
			}
		})
	}
}

func TestUnverifiedEmailDoesNotMatch(t *testing.T) {
	p := mustCompile(t, Options{Allow: []Rule{
		{Name: "corp", EmailDomains: []string{"example.com"}},
		{Name: "alice", Emails: []string{"alice@example.com"}},
	}})
	id := &Identity{Subject: "x", Email: "alice@example.com", EmailVerified: false}
	want := Decision{Rule: "corp", Reason: ReasonEmailDenied}
	if diff := cmp.Diff(want, p.Decide(Input{Method: "GET", Path: "/", Identity: id})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestEmailsCaseInsensitive(t *testing.T) {
	p := mustCompile(t, Options{Allow: []Rule{{Name: "alice", Emails: []string{"Alice@Example.com"}}}})
	for _, e := range []string{"alice@example.com", "ALICE@EXAMPLE.COM"} {
		id := &Identity{Email: e, EmailVerified: true}
		if got := p.Decide(Input{Method: "GET", Path: "/", Identity: id}); !got.Allow {
			t.Errorf("%q: %+v, want allow", e, got)
		}
	}
	id := &Identity{Email: "alicex@example.com", EmailVerified: true}
	if got := p.Decide(Input{Method: "GET", Path: "/", Identity: id}); got.Allow {
		t.Errorf("alicex: %+v, want deny", got)
	}
}

func TestGroupCaseMatters(t *testing.T) {
	p := mustCompile(t, Options{Allow: []Rule{{Name: "admins", Groups: []string{"admins"}}}})
	tests := []struct {
		group string
		allow bool
	}{
		{"admins", true},
		{"Admins", false},
		{"ADMINS", false},
		{"admins ", false},
		{"admin", false},
		{"admins\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.group, func(t *testing.T) {
			id := &Identity{Subject: "x", Groups: []string{tt.group}}
			got := p.Decide(Input{Method: "GET", Path: "/", Identity: id})
			if got.Allow != tt.allow {
				t.Errorf("group %q: %+v, want Allow=%v", tt.group, got, tt.allow)
			}
			if !tt.allow && got.Reason != ReasonGroupDenied {
				t.Errorf("group %q: reason %q, want %q", tt.group, got.Reason, ReasonGroupDenied)
			}
		})
	}
}

func TestClaims(t *testing.T) {
	tests := []struct {
		name   string
		claims map[string][]string
		allow  bool
	}{
		{"string", map[string][]string{"tier": {"silver", "gold"}}, true},
		{"string-case", map[string][]string{"tier": {"Gold"}}, false},
		{"dotted-list", map[string][]string{"realm_access.roles": {"writer"}}, true},
		{"dotted-list-miss", map[string][]string{"realm_access.roles": {"owner"}}, false},
		{"namespaced-name-with-dots", map[string][]string{"https://example.com/roles": {"billing"}}, true},
		{"number", map[string][]string{"level": {"3"}}, true},
		{"number-spelled-differently", map[string][]string{"level": {"3.0"}}, true},
		{"number-miss", map[string][]string{"level": {"4"}}, false},
		{"bool", map[string][]string{"mfa": {"true"}}, true},
		{"bool-miss", map[string][]string{"mfa": {"false"}}, false},
		{"missing", map[string][]string{"nope": {"x"}}, false},
		{"object-never-matches", map[string][]string{"realm_access": {"map[]"}}, false},
		{"all-must-hold", map[string][]string{"tier": {"gold"}, "mfa": {"false"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, Options{Allow: []Rule{{Name: "r", Claims: tt.claims}}})
			got := p.Decide(Input{Method: "GET", Path: "/", Identity: alice})
			if got.Allow != tt.allow {
				t.Errorf("%+v, want Allow=%v", got, tt.allow)
			}
			if !tt.allow && got.Reason != ReasonClaimDenied {
				t.Errorf("reason %q, want %q", got.Reason, ReasonClaimDenied)
			}
		})
	}
}

func TestClaimNestedListNotFlattened(t *testing.T) {
	// Only one level of list is searched: [["admin"]] is not "admin".
	p := mustCompile(t, Options{Allow: []Rule{{Name: "r", Claims: map[string][]string{"roles": {"admin"}}}}})
	id := &Identity{Claims: map[string]any{"roles": []any{[]any{"admin"}}}}
	if got := p.Decide(Input{Method: "GET", Path: "/", Identity: id}); got.Allow {
		t.Errorf("%+v, want deny", got)
	}
}

func TestDecideReasons(t *testing.T) {
	p := mustCompile(t, Options{
		Allow: []Rule{
			{Name: "api-read", Methods: []string{"GET", "HEAD"}, Paths: []string{"/api"}, Groups: []string{"staff"}},
			{Name: "admin", Paths: []string{"/admin"}, Groups: []string{"admins"}, SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			{Name: "office", Paths: []string{"/office/**"}, SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
			{Name: "billing", Paths: []string{"/billing"}, Claims: map[string][]string{"tier": {"gold"}}},
			{Name: "me", Paths: []string{"/me"}, Authenticated: true},
		},
	})
	tests := []struct {
		name string
		in   Input
		want Decision
	}{
		{"allowed", Input{Method: "GET", Path: "/api/x", Identity: bob}, Decision{Allow: true, Rule: "api-read", Reason: ReasonAllowedByRule}},
		{"anonymous-needs-login", Input{Method: "GET", Path: "/api/x"}, Decision{NeedLogin: true, Rule: "api-read", Reason: ReasonNoSession}},
		{"anonymous-wrong-method-no-login-helps", Input{Method: "POST", Path: "/api/x"}, Decision{Reason: ReasonNoRuleMatched}},
		{"anonymous-unknown-path", Input{Method: "GET", Path: "/nowhere"}, Decision{Reason: ReasonNoRuleMatched}},
		{"anonymous-source-only-rule", Input{Method: "GET", Path: "/office/a", SourceIP: ip("192.0.2.7")}, Decision{Allow: true, Rule: "office", Reason: ReasonAllowedByRule}},
		{"anonymous-wrong-source-for-admin", Input{Method: "GET", Path: "/admin", SourceIP: ip("192.0.2.7")}, Decision{Reason: ReasonNoRuleMatched}},
		{"anonymous-right-source-for-admin", Input{Method: "GET", Path: "/admin", SourceIP: ip("10.1.2.3")}, Decision{NeedLogin: true, Rule: "admin", Reason: ReasonNoSession}},
		{"method-denied", Input{Method: "DELETE", Path: "/api/x", Identity: bob}, Decision{Rule: "api-read", Reason: ReasonMethodDenied}},
		{"group-denied", Input{Method: "GET", Path: "/admin", SourceIP: ip("10.1.2.3"), Identity: bob}, Decision{Rule: "admin", Reason: ReasonGroupDenied}},
		{"source-denied", Input{Method: "GET", Path: "/admin", SourceIP: ip("192.0.2.7"), Identity: alice}, Decision{Rule: "admin", Reason: ReasonSourceDenied}},
		{"source-invalid-ip", Input{Method: "GET", Path: "/admin", Identity: alice}, Decision{Rule: "admin", Reason: ReasonSourceDenied}},
		{"two-unmet", Input{Method: "GET", Path: "/admin", SourceIP: ip("192.0.2.7"), Identity: bob}, Decision{Reason: ReasonNoRuleMatched}},
		{"claim-denied", Input{Method: "GET", Path: "/billing", Identity: bob}, Decision{Rule: "billing", Reason: ReasonClaimDenied}},
		{"authenticated", Input{Method: "GET", Path: "/me", Identity: bob}, Decision{Allow: true, Rule: "me", Reason: ReasonAllowedByRule}},
		// Every rule misses only the path here; the first one wins the tie.
		{"path-denied-tie-first-rule", Input{Method: "GET", Path: "/nowhere", SourceIP: ip("10.0.0.1"), Identity: alice}, Decision{Rule: "api-read", Reason: ReasonPathDenied}},
		{"invalid-input-empty-path", Input{Method: "GET", Path: "", Identity: alice}, Decision{Reason: ReasonInvalidInput}},
		{"invalid-input-relative-path", Input{Method: "GET", Path: "api/x", Identity: alice}, Decision{Reason: ReasonInvalidInput}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, p.Decide(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestSourceCIDRMappedPrefix(t *testing.T) {
	p := mustCompile(t, Options{Allow: []Rule{{Name: "lan", SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}}})
	for _, a := range []string{"10.2.3.4", "::ffff:10.2.3.4"} {
		if got := p.Decide(Input{Method: "GET", Path: "/", SourceIP: ip(a)}); !got.Allow {
			t.Errorf("%s: %+v, want allow", a, got)
		}
	}
	if got := p.Decide(Input{Method: "GET", Path: "/", SourceIP: ip("11.2.3.4")}); got.Allow {
		t.Errorf("11.2.3.4: %+v, want deny", got)
	}
}

func TestCompileErrors(t *testing.T) {
	_, err := Compile(Options{
		Allow: []Rule{
			{Name: "empty"},
			{Name: "bad", Methods: []string{"get", "FETCH"}, Paths: []string{"api", "/a**", "/a/../b", "/a//b", ""}, Groups: []string{""}},
			{Name: "mail", Emails: []string{"nobody"}, EmailDomains: []string{"*.com", "exa mple.com", "@example.com", "**.example.com"}},
			{Name: "claims", Claims: map[string][]string{"": {"x"}, "a..b": {"x"}, "roles": nil}},
			{Name: "dup", Authenticated: true},
			{Name: "dup", Authenticated: true},
			{Name: "cidr", SourceCIDRs: []netip.Prefix{{}}},
		},
		Deny:   []Rule{{}},
		Public: []string{"static"},
	})
	if err == nil {
		t.Fatal("Compile succeeded, want errors")
	}
	want := []string{
		`rule "deny[0]": rule has no conditions (use public paths to allow everyone)`,
		`rule "empty": rule has no conditions (use public paths to allow everyone)`,
		`rule "bad": methods[0]: unknown method "get" (want one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)`,
		`rule "bad": methods[1]: unknown method "FETCH" (want one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)`,
		`rule "bad": paths[0]: "api": path pattern must start with "/"`,
		`rule "bad": paths[1]: "/a**": bad glob: "**" must be a whole segment`,
		`rule "bad": paths[2]: "/a/../b": bad glob: dot-segment ".." never matches a canonical path`,
		`rule "bad": paths[3]: "/a//b": bad glob: empty segment never matches a canonical path`,
		`rule "bad": paths[4]: empty path pattern`,
		`rule "bad": groups[0]: empty value`,
		`rule "mail": emails[0]: bad email "nobody"`,
		`rule "mail": email_domains[0]: bad email domain "*.com" (want "example.com" or "*.example.com")`,
		`rule "mail": email_domains[1]: bad email domain "exa mple.com" (want "example.com" or "*.example.com")`,
		`rule "mail": email_domains[2]: bad email domain "@example.com" (want "example.com" or "*.example.com")`,
		`rule "mail": email_domains[3]: bad email domain "**.example.com" (want "example.com" or "*.example.com")`,
		`rule "claims": claims[""]: bad claim condition: bad claim name`,
		`rule "claims": claims["a..b"]: bad claim condition: bad claim name`,
		`rule "claims": claims["roles"]: bad claim condition: no accepted values`,
		`rule "dup": name: duplicate rule name`,
		`rule "cidr": source_cidrs[0]: bad CIDR`,
		`rule "public": public[0]: "static": path pattern must start with "/"`,
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	for _, target := range []error{ErrEmptyRule, ErrUnknownMethod, ErrBadGlob, ErrPatternNotRooted, ErrBadEmail, ErrBadDomain, ErrBadClaim, ErrDuplicateName, ErrBadCIDR} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(err, %v) = false", target)
		}
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Rule != "deny[0]" {
		t.Errorf("errors.As FieldError = %+v", fe)
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern string
		path    string
		want    bool
	}{
		{"/api/*", "/api/x", true},
		{"/api/*", "/api/", true},
		{"/api/*", "/api", false},
		{"/api/*", "/api/x/y", false},
		{"/api/*/items", "/api/v1/items", true},
		{"/api/*/items", "/api/v1/v2/items", false},
		{"/api/*/items", "/api/v1/itemsx", false},
		{"/*.css", "/a.css", true},
		{"/*.css", "/a/b.css", false},
		{"/*.css", "/a.cssx", false},
		{"/f*o*o", "/foxoxoo", true},
		{"/api/**", "/api", true},
		{"/api/**", "/api/", true},
		{"/api/**", "/api/a/b/c", true},
		{"/api/**", "/apix", false},
		{"/api/**", "/apix/a", false},
		{"/**/secret", "/secret", true},
		{"/**/secret", "/a/b/secret", true},
		{"/**/secret", "/a/b/secretx", false},
		{"/**/secret", "/a/secret/b", false},
		{"/a/**/b/**/c", "/a/x/b/y/z/c", true},
		{"/a/**/b/**/c", "/a/b/c", true},
		{"/a/**/b/**/c", "/a/c/b", false},
		{"/**", "/", true},
		{"/**", "/anything/at/all", true},
		{"/*", "/", true},
		{"/*", "/a/", false},
		{"/a/*/", "/a/b/", true},
		{"/a/*/", "/a/b", false},
		// Prefix patterns.
		{"/", "/anything", true},
		{"/api/", "/api/x", true},
		{"/api/", "/api", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.path, func(t *testing.T) {
			pp, err := compilePath(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := pp.match(tt.path); got != tt.want {
				t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
			}
		})
	}
}

func TestGlobPathologicalIsFast(t *testing.T) {
	// Many "**" segments and a long non-matching path would take
	// exponential time with a naive backtracking matcher.
	pat := "/" + strings.Repeat("**/a/", 20) + "b"
	pp, err := compilePath(pat)
	if err != nil {
		t.Fatal(err)
	}
	path := "/" + strings.Repeat("a/", 2000) + "c"
	if pp.match(path) {
		t.Error("matched, want no match")
	}
}

func TestConcurrentDecide(t *testing.T) {
	p := benchPolicy(t)
	done := make(chan bool)
	for range 4 {
		go func() {
			for range 1000 {
				if !p.Decide(Input{Method: "GET", Path: "/api/v1/items", SourceIP: ip("10.0.0.1"), Identity: alice}).Allow {
					done <- false
					return
				}
			}
			done <- true
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("concurrent Decide did not allow")
		}
	}
}

func TestPatternInvalidUTF8Rejected(t *testing.T) {
	if _, err := compilePath("/\x91"); !errors.Is(err, ErrBadGlob) {
		t.Errorf("compilePath(invalid UTF-8) = %v, want ErrBadGlob", err)
	}
}
