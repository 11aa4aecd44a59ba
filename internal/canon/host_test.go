package canon

import (
	"errors"
	"strings"
	"testing"
)

func TestHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		tls  bool
		want string
		err  error
	}{
		{name: "canonical", in: "app.example.com", want: "app.example.com"},
		{name: "lower-cased", in: "App.Example.COM", want: "app.example.com"},
		{name: "trailing-dot", in: "app.example.com.", want: "app.example.com"},
		{name: "trailing-dot-with-port", in: "app.example.com.:8443", tls: true, want: "app.example.com:8443"},
		{name: "default-http-port", in: "app.example.com:80", want: "app.example.com"},
		{name: "default-https-port", in: "app.example.com:443", tls: true, want: "app.example.com"},
		{name: "http-port-on-tls-kept", in: "app.example.com:80", tls: true, want: "app.example.com:80"},
		{name: "https-port-on-plain-kept", in: "app.example.com:443", want: "app.example.com:443"},
		{name: "other-port", in: "app.example.com:8080", want: "app.example.com:8080"},
		{name: "leading-zero-port", in: "app.example.com:08080", want: "app.example.com:8080"},
		{name: "leading-zero-default-port", in: "app.example.com:0443", tls: true, want: "app.example.com"},
		{name: "single-label", in: "localhost", want: "localhost"},
		{name: "underscore", in: "my_host.internal", want: "my_host.internal"},
		{name: "ipv4", in: "10.0.0.1:80", want: "10.0.0.1"},
		{name: "ipv6", in: "[::1]", want: "[::1]"},
		{name: "ipv6-port", in: "[::1]:8080", want: "[::1]:8080"},
		{name: "ipv6-default-port", in: "[2001:DB8::1]:443", tls: true, want: "[2001:db8::1]"},
		{name: "ipv6-rfc5952", in: "[2001:db8:0:0:0:0:0:1]", want: "[2001:db8::1]"},
		{name: "ipv4-mapped-ipv6", in: "[::FFFF:1.2.3.4]", want: "[::ffff:1.2.3.4]"},

		{name: "empty", in: "", err: ErrEmptyHost},
		{name: "only-dot", in: ".", err: ErrInvalidHost},
		{name: "two-trailing-dots", in: "example.com..", err: ErrInvalidHost},
		{name: "empty-label", in: "a..b", err: ErrInvalidHost},
		{name: "leading-dot", in: ".example.com", err: ErrInvalidHost},
		{name: "only-port", in: ":80", err: ErrInvalidHost},
		{name: "space", in: "exa mple.com", err: ErrInvalidHost},
		{name: "userinfo", in: "user@example.com", err: ErrInvalidHost},
		{name: "percent-encoded", in: "exa%6Dple.com", err: ErrInvalidHost},
		{name: "slash", in: "example.com/admin", err: ErrInvalidHost},
		{name: "backslash", in: `example.com\admin`, err: ErrInvalidHost},
		{name: "non-ascii", in: "exämple.com", err: ErrInvalidHost},
		{name: "nul", in: "example.com\x00.evil", err: ErrInvalidHost},
		{name: "unbracketed-ipv6", in: "::1", err: ErrInvalidHost},
		{name: "unclosed-bracket", in: "[::1", err: ErrInvalidHost},
		{name: "bracketed-ipv4", in: "[1.2.3.4]", err: ErrInvalidHost},
		{name: "bracketed-name", in: "[example.com]", err: ErrInvalidHost},
		{name: "ipv6-zone", in: "[fe80::1%25eth0]", err: ErrInvalidHost},
		{name: "junk-after-bracket", in: "[::1]x", err: ErrInvalidHost},
		{name: "label-too-long", in: strings.Repeat("a", 64) + ".com", err: ErrInvalidHost},
		{name: "name-too-long", in: strings.Repeat("a.", 127) + "a", err: ErrInvalidHost},
		{name: "empty-port", in: "example.com:", err: ErrInvalidPort},
		{name: "zero-port", in: "example.com:0", err: ErrInvalidPort},
		{name: "port-too-big", in: "example.com:65536", err: ErrInvalidPort},
		{name: "port-too-long", in: "example.com:000080", err: ErrInvalidPort},
		{name: "port-sign", in: "example.com:+80", err: ErrInvalidPort},
		{name: "two-ports", in: "example.com:80:80", err: ErrInvalidHost},
		{name: "ipv6-empty-port", in: "[::1]:", err: ErrInvalidPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Host(tc.in, tc.tls)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || got != "" {
					t.Fatalf("Host(%q, %v) = %q, %v; want error %v", tc.in, tc.tls, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Host(%q, %v) = %q, %v; want %q", tc.in, tc.tls, got, err, tc.want)
			}
			if again, err := Host(got, tc.tls); err != nil || again != got {
				t.Errorf("Host(%q, %v) = %q, %v; not idempotent", got, tc.tls, again, err)
			}
		})
	}
}

// TestHostCaseAndDotVariantsRouteAlike checks that the spellings an attacker
// might use to miss an exact-match route (and fall through to a default
// route with weaker policy) all collapse to one routing key.
func TestHostCaseAndDotVariantsRouteAlike(t *testing.T) {
	for _, in := range []string{
		"admin.example.com", "ADMIN.example.com", "admin.example.com.",
		"Admin.Example.Com.:443", "admin.example.com:443", "admin.example.com:00443",
	} {
		got, err := Host(in, true)
		if err != nil || got != "admin.example.com" {
			t.Errorf("Host(%q, true) = %q, %v; want admin.example.com", in, got, err)
		}
	}
}

func TestHostCleanDoesNotAllocate(t *testing.T) {
	for _, h := range []string{"app.example.com", "app.example.com:8443", "[::1]:8080"} {
		allocs := testing.AllocsPerRun(100, func() {
			if out, err := Host(h, true); err != nil || out != h {
				t.Fatalf("Host(%q) = %q, %v", h, out, err)
			}
		})
		if allocs != 0 {
			t.Errorf("Host(%q) allocates %v times; want 0", h, allocs)
		}
	}
}
