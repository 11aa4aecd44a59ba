package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCEL(t *testing.T) {
	tests := []struct {
		name string
		expr string
		in   Input
		want Decision
	}{
		{"request-only-anonymous", `request.path.startsWith("/pub") && request.method == "GET"`,
			Input{Method: "GET", Path: "/pub/x"}, Decision{Allow: true, Rule: "r", Reason: ReasonAllowedByRule}},
		{"request-only-false", `request.path.startsWith("/pub")`,
			Input{Method: "GET", Path: "/priv", Identity: alice}, Decision{Rule: "r", Reason: ReasonCELDenied}},
		{"source-ip", `request.source_ip == "10.0.0.1"`,
			Input{Method: "GET", Path: "/", SourceIP: netip.MustParseAddr("::ffff:10.0.0.1")}, Decision{Allow: true, Rule: "r", Reason: ReasonAllowedByRule}},
		{"user-needs-login", `"admins" in user.groups`,
			Input{Method: "GET", Path: "/"}, Decision{NeedLogin: true, Rule: "r", Reason: ReasonNoSession}},
		{"user-groups", `"admins" in user.groups`,
			Input{Method: "GET", Path: "/", Identity: alice}, Decision{Allow: true, Rule: "r", Reason: ReasonAllowedByRule}},
		{"user-groups-denied", `"admins" in user.groups`,
			Input{Method: "GET", Path: "/", Identity: bob}, Decision{Rule: "r", Reason: ReasonCELDenied}},
		{"nested-claims", `"writer" in user.claims.realm_access.roles && user.email_verified`,
			Input{Method: "GET", Path: "/", Identity: alice}, Decision{Allow: true, Rule: "r", Reason: ReasonAllowedByRule}},
		{"has-guard", `has(user.claims.tier) && user.claims.tier == "gold"`,
			Input{Method: "GET", Path: "/", Identity: bob}, Decision{Rule: "r", Reason: ReasonCELDenied}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, Options{Allow: []Rule{{Name: "r", CEL: tt.expr}}})
			if diff := cmp.Diff(tt.want, p.Decide(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCELRuntimeErrorDenies(t *testing.T) {
	manyGroups := make([]string, 1000)
	for i := range manyGroups {
		manyGroups[i] = strings.Repeat("g", i%7+1)
	}
	heavy := &Identity{Subject: "h", Groups: manyGroups}
	tests := []struct {
		name string
		opts Options
		in   Input
		want Decision
	}{
		{
			// bob has no "tier" claim: a map lookup of a missing key is an
			// evaluation error. The later rule would allow; the error wins.
			name: "missing-key-in-allow-rule",
			opts: Options{Allow: []Rule{
				{Name: "gold", CEL: `user.claims["tier"] == "gold"`},
				{Name: "staff", Groups: []string{"staff"}},
			}},
			in:   Input{Method: "GET", Path: "/", Identity: bob},
			want: Decision{Rule: "gold", Reason: ReasonCELError},
		},
		{
			name: "error-in-deny-rule",
			opts: Options{
				Deny:  []Rule{{Name: "no-contractors", CEL: `user.claims.contractor == true`}},
				Allow: []Rule{{Name: "staff", Groups: []string{"staff"}}},
			},
			in:   Input{Method: "GET", Path: "/", Identity: bob},
			want: Decision{Rule: "no-contractors", Reason: ReasonCELError},
		},
		{
			name: "division-by-zero",
			opts: Options{Allow: []Rule{{Name: "div", CEL: `1 / (size(request.path) - 1) == 1`}}},
			in:   Input{Method: "GET", Path: "/", Identity: bob},
			want: Decision{Rule: "div", Reason: ReasonCELError},
		},
		{
			name: "cost-limit",
			opts: Options{Allow: []Rule{{Name: "heavy", CEL: `user.groups.all(g, user.groups.exists(h, h == g))`}}},
			in:   Input{Method: "GET", Path: "/", Identity: heavy},
			want: Decision{Rule: "heavy", Reason: ReasonCELError},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, tt.opts)
			if diff := cmp.Diff(tt.want, p.Decide(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCELCompileErrors(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{"syntax", `request.path ==`, `rule "r": cel: bad CEL expression: ERROR: <input>:1:16: Syntax error:`},
		{"undeclared-field", `request.mehtod == "GET"`, `rule "r": cel: bad CEL expression: ERROR: <input>:1:8: undeclared reference to 'request.mehtod' (did you mean 'request.method'?)`},
		{"type-error", `request.path == 1`, `rule "r": cel: bad CEL expression: ERROR: <input>:1:14: found no matching overload for '_==_'`},
		{"not-bool", `request.path`, `rule "r": cel: bad CEL expression: result type is string, want bool`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(Options{Allow: []Rule{{Name: "r", CEL: tt.expr}}})
			if !errors.Is(err, ErrBadCEL) {
				t.Fatalf("Compile = %v, want ErrBadCEL", err)
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %q, want one line starting %q", err, tt.want)
			}
		})
	}
}

func BenchmarkDecideCEL(b *testing.B) {
	opts := Options{
		Public: []string{"/static"},
		Deny:   []Rule{{Name: "no-blocked-net", SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}},
		Allow: []Rule{
			{Name: "admins", Paths: []string{"/admin"}, Groups: []string{"admins"}},
			{Name: "writers", Methods: []string{"POST"}, Paths: []string{"/api/**"}, Claims: map[string][]string{"realm_access.roles": {"writer"}}},
			{Name: "readers", Methods: []string{"GET"}, Paths: []string{"/api"}, CEL: `"staff" in user.groups && user.email.endsWith("@example.com")`},
		},
	}
	p := mustCompile(b, opts)
	in := Input{Method: "GET", Host: "app.example.com", Path: "/api/v1/items/42", SourceIP: netip.MustParseAddr("10.1.2.3"), Identity: alice}
	if d := p.Decide(in); !d.Allow || d.Rule != "readers" {
		b.Fatalf("Decide = %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(in)
	}
}
