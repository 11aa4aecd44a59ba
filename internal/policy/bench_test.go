package policy

import (
	"net/netip"
	"testing"
)

// benchPolicy is a typical route: three Allow rules, one Deny rule and
// public static assets.
func benchPolicy(tb testing.TB) *Policy {
	return mustCompile(tb, Options{
		Public: []string{"/static", "/favicon.ico"},
		Deny: []Rule{
			{Name: "no-blocked-net", SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
		},
		Allow: []Rule{
			{Name: "admins", Paths: []string{"/admin"}, Groups: []string{"admins"}, SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			{Name: "writers", Methods: []string{"POST", "PUT", "PATCH", "DELETE"}, Paths: []string{"/api/**"}, Claims: map[string][]string{"realm_access.roles": {"writer"}}},
			{Name: "readers", Methods: []string{"GET", "HEAD"}, Paths: []string{"/api", "/docs/*/index.html"}, EmailDomains: []string{"example.com"}, Groups: []string{"staff"}},
		},
	})
}

func BenchmarkDecide(b *testing.B) {
	p := benchPolicy(b)
	cases := []struct {
		name string
		in   Input
	}{
		{"allow-third-rule", Input{Method: "GET", Host: "app.example.com", Path: "/api/v1/items/42", SourceIP: netip.MustParseAddr("10.1.2.3"), Identity: alice}},
		{"allow-claim-rule", Input{Method: "POST", Host: "app.example.com", Path: "/api/v1/items", SourceIP: netip.MustParseAddr("10.1.2.3"), Identity: alice}},
		{"deny-closest-reason", Input{Method: "DELETE", Host: "app.example.com", Path: "/api/v1/items/42", SourceIP: netip.MustParseAddr("10.1.2.3"), Identity: bob}},
		{"need-login", Input{Method: "GET", Host: "app.example.com", Path: "/api/v1/items/42", SourceIP: netip.MustParseAddr("10.1.2.3")}},
		{"public", Input{Method: "GET", Host: "app.example.com", Path: "/static/app.js", SourceIP: netip.MustParseAddr("10.1.2.3")}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(c.in)
			}
		})
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	p := benchPolicy(t)
	in := Input{Method: "DELETE", Path: "/api/v1/items/42", SourceIP: netip.MustParseAddr("10.1.2.3"), Identity: bob}
	if n := testing.AllocsPerRun(100, func() { p.Decide(in) }); n != 0 {
		t.Errorf("Decide allocates %v times per call, want 0", n)
	}
}
