package idheader

import (
	"errors"
	"net/http"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func newStripper(t testing.TB, names ...string) *Stripper {
	t.Helper()
	s, err := NewStripper(Options{Names: names})
	if err != nil {
		t.Fatalf("NewStripper(%q): %v", names, err)
	}
	return s
}

// browserHeaders returns a typical browser request's headers, none of which
// Strip may remove.
func browserHeaders() http.Header {
	return http.Header{
		"Accept":            {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		"Accept-Encoding":   {"gzip, deflate, br, zstd"},
		"Accept-Language":   {"en-US,en;q=0.5"},
		"Cache-Control":     {"no-cache"},
		"Cookie":            {"__Host-gh_session=abc; metabase.DEVICE=1"},
		"Priority":          {"u=0, i"},
		"Referer":           {"https://metabase.example.com/dashboard/1"},
		"Sec-Fetch-Dest":    {"document"},
		"Sec-Fetch-Mode":    {"navigate"},
		"Sec-Fetch-Site":    {"same-origin"},
		"User-Agent":        {"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"},
		"X-Forwarded-For":   {"203.0.113.7"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"metabase.example.com"},
		"X-Request-Id":      {"01J9ZK3Q7F6V"},
	}
}

func keys(h http.Header) []string {
	var ks []string
	for k := range h {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// assertStripped adds each forged key to a browser request, strips it, and
// checks that exactly the forged keys are gone.
func assertStripped(t *testing.T, s *Stripper, forged ...string) {
	t.Helper()
	for _, k := range forged {
		t.Run(k, func(t *testing.T) {
			h := browserHeaders()
			h[k] = []string{"admin@example.com", "second"}
			if n := s.Strip(h); n != 1 {
				t.Errorf("Strip removed %d keys; want 1", n)
			}
			if diff := cmp.Diff(keys(browserHeaders()), keys(h)); diff != "" {
				t.Errorf("headers after Strip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestForgedIdentityHeadersStripped(t *testing.T) {
	assertStripped(t, newStripper(t),
		"Remote-User", "X-Remote-User", "X-Remote-Email", "X-Remote-Groups",
		"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups",
		"X-Forwarded-Preferred-Username", "X-Forwarded-Access-Token", "X-Webauth-User",
		"X-Gatehouse-User", "X-Gatehouse-Email", "X-Gatehouse-Groups", "X-Gatehouse-Assertion",
		"X-Gatehouse-", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Access-Token",
	)
}

func TestCaseVariantStripped(t *testing.T) {
	// HTTP/2 lower-cases names, and a map set directly keeps any spelling.
	assertStripped(t, newStripper(t),
		"x-forwarded-user", "X-WEBAUTH-USER", "x-webauth-user", "REMOTE-USER",
		"x-GATEHOUSE-user", "X-AUTH-REQUEST-GROUPS", "forwarded", "X-ORIGINAL-URL",
	)
}

func TestUnderscoreVariantStripped(t *testing.T) {
	// Go canonicalizes "x_forwarded_user" to "X_forwarded_user"; CGI-style
	// upstreams read it as X-Forwarded-User.
	assertStripped(t, newStripper(t),
		"X_forwarded_user", "X_Forwarded_User", "x_webauth_user", "Remote_user",
		"X_gatehouse_user", "X-Gatehouse_User", "X_auth_request_email",
		"X-Forwarded_Email", "X_original_url", "X_http_method_override", "X_real_ip",
	)
}

func TestOriginalURLHeadersStripped(t *testing.T) {
	assertStripped(t, newStripper(t),
		"X-Forwarded-Uri", "X-Original-Url", "X-Original-Uri", "X-Rewrite-Url",
		"X-Forwarded-Prefix", "X-Forwarded-Path",
	)
}

func TestMethodOverrideStripped(t *testing.T) {
	assertStripped(t, newStripper(t),
		"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
	)
}

func TestSpoofedClientAddressHeadersStripped(t *testing.T) {
	assertStripped(t, newStripper(t),
		"X-Real-Ip", "True-Client-Ip", "X-Client-Ip", "X-Forwarded-Port",
		"X-Forwarded-Server", "Forwarded",
	)
}

func TestConfiguredIdentityHeadersStripped(t *testing.T) {
	assertStripped(t, newStripper(t, "X-Custom-Email", "x_custom_user", "Authorization"),
		"X-Custom-Email", "x-custom-email", "X_custom_email",
		"X-Custom-User", "X_Custom_User", "Authorization",
	)
}

func TestDuplicateIdentityHeadersStripped(t *testing.T) {
	// Every spelling of one header is a separate map key; all must go, with
	// all their values.
	h := browserHeaders()
	forged := []string{"X-Forwarded-User", "x-forwarded-user", "X_forwarded_user", "X_Forwarded-USER"}
	for _, k := range forged {
		h[k] = []string{"admin", "admin2"}
	}
	if n := newStripper(t).Strip(h); n != len(forged) {
		t.Errorf("Strip removed %d keys; want %d", n, len(forged))
	}
	if diff := cmp.Diff(keys(browserHeaders()), keys(h)); diff != "" {
		t.Errorf("headers after Strip (-want +got):\n%s", diff)
	}
}

func TestLookalikeHeadersKept(t *testing.T) {
	// Prefixes include their trailing "-"; exact names match whole keys
	// only. The X-Forwarded-For/Proto/Host and X-Request-Id headers are left
	// for the caller, which handles them by trust.
	s := newStripper(t)
	for _, k := range []string{
		"X-Gatehousex", "X-Gatehouse", "X-Gatehouses-User", "Gatehouse-User",
		"X-Auth-Request", "X-Auth-Requested-By", "X-Forwarded-Users", "X-Forwarded-Use",
		"X-Remote-User-Agent", "Remote-Users", "X-Forwarded-For", "X-Forwarded-Proto",
		"X-Forwarded-Host", "X-Request-Id", "X-Forwarded-Uri-Extra", "Forwarded-For",
		"Authorization", "Cookie", "X-Http-Method-Overrides",
	} {
		h := http.Header{k: {"v"}}
		if n := s.Strip(h); n != 0 || len(h) != 1 {
			t.Errorf("Strip removed %q", k)
		}
	}
}

func TestFoldedLineCannotBecomeIdentityHeader(t *testing.T) {
	// textproto unfolds obs-fold continuation lines into the previous
	// value, so "X-Foo: a\r\n X-Forwarded-User: admin" arrives as one value
	// of X-Foo. Strip looks at keys only and must leave it there.
	h := http.Header{"X-Foo": {"a X-Forwarded-User: admin"}}
	if n := newStripper(t).Strip(h); n != 0 {
		t.Errorf("Strip removed %d keys", n)
	}
}

func TestNewStripperRejectsBadNames(t *testing.T) {
	_, err := NewStripper(Options{Names: []string{
		"X-Good", "", "X Bad", "X-Bad:", "X-Forwarded-For", "x_request_id", "Host", "X-Ünicode",
	}})
	if !errors.Is(err, ErrInvalidName) || !errors.Is(err, ErrReservedName) {
		t.Fatalf("NewStripper error = %v; want both ErrInvalidName and ErrReservedName", err)
	}
	want := `idheader: names[1] "": not a valid header name
idheader: names[2] "X Bad": not a valid header name
idheader: names[3] "X-Bad:": not a valid header name
idheader: names[4] "X-Forwarded-For": header is reserved and cannot be used as an identity header
idheader: names[5] "x_request_id": header is reserved and cannot be used as an identity header
idheader: names[6] "Host": header is reserved and cannot be used as an identity header
idheader: names[7] "X-Ünicode": not a valid header name`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

func TestStripTypicalRequestDoesNotAllocate(t *testing.T) {
	s := newStripper(t, "X-Custom-Email")
	h := browserHeaders()
	allocs := testing.AllocsPerRun(100, func() {
		if n := s.Strip(h); n != 0 {
			t.Fatalf("Strip removed %d keys", n)
		}
	})
	if allocs != 0 {
		t.Errorf("Strip allocates %v times; want 0", allocs)
	}
}
