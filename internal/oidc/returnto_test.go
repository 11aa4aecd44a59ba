package oidc

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode"
)

const testOrigin = "https://app.example.com"

var testAllowed = []string{"https://docs.example.com", "http://127.0.0.1:8080"}

// openRedirectPayloads are return_to values that must never be accepted for
// testOrigin with testAllowed. Most come from public open-redirect payload
// lists (PayloadsAllTheThings, the OWASP cheat sheet, past advisories in
// oauth2-proxy, Pomerium and Authelia).
var openRedirectPayloads = map[string]string{
	"empty":                        "",
	"scheme-relative":              "//evil.com",
	"dot-then-encoded-slashes":     "/./%2F%2Fevil.com",
	"dotdot-then-encoded-slashes":  "/a/../%2F%2Fevil.com",
	"dot-then-encoded-backslash":   "/./%5Cevil.com",
	"dot-then-lookalike-slash":     "/./%E2%88%95evil.com",
	"scheme-relative-path":         "//evil.com/app.example.com",
	"triple-slash":                 "///evil.com",
	"quadruple-slash":              "////evil.com",
	"slash-backslash":              `/\evil.com`,
	"backslash-slash":              `\/evil.com`,
	"slash-backslash-slash":        `/\/evil.com`,
	"double-backslash":             `\\evil.com`,
	"single-backslash":             `\evil.com`,
	"encoded-double-slash":         "%2F%2Fevil.com",
	"encoded-double-slash-lower":   "%2f%2fevil.com",
	"slash-encoded-slash":          "/%2Fevil.com",
	"slash-encoded-slash-lower":    "/%2fevil.com",
	"slash-encoded-backslash":      "/%5Cevil.com",
	"slash-encoded-backslash-low":  "/%5cevil.com",
	"encoded-slash-then-slash":     "/%2F/evil.com",
	"double-encoded-slashes":       "%252F%252Fevil.com",
	"slash-double-encoded-slash":   "/%252Fevil.com",
	"slash-double-encoded-bslash":  "/%255Cevil.com",
	"slash-tab-slash":              "/\t/evil.com",
	"slash-encoded-tab-slash":      "/%09/evil.com",
	"slash-encoded-nul":            "/%00/evil.com",
	"slash-encoded-nbsp":           "/%C2%A0/evil.com",
	"slash-encoded-invalid-utf8":   "/%FF/evil.com",
	"slash-encoded-crlf":           "/%0d%0aLocation:%20https://evil.com",
	"leading-space":                " /dashboard",
	"trailing-space":               "/dashboard ",
	"leading-tab":                  "\t//evil.com",
	"embedded-newline":             "/\n/evil.com",
	"embedded-cr":                  "/\r/evil.com",
	"embedded-nul":                 "/\x00/evil.com",
	"embedded-del":                 "/\x7f/evil.com",
	"line-separator":               "/\u2028/evil.com",
	"paragraph-separator":          "/\u2029/evil.com",
	"nbsp":                         "/\u00a0/evil.com",
	"next-line":                    "/\u0085/evil.com",
	"division-slash":               "/\u2215evil.com",
	"fullwidth-slash":              "/\uff0fevil.com",
	"fullwidth-slashes":            "\uff0f\uff0fevil.com",
	"encoded-division-slash":       "/%E2%88%95evil.com",
	"encoded-fullwidth-slash":      "/%EF%BC%8Fevil.com",
	"javascript":                   "javascript:alert(1)",
	"javascript-upper":             "JaVaScRiPt:alert(1)",
	"javascript-slashes":           "javascript://app.example.com/%0aalert(1)",
	"data":                         "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
	"vbscript":                     "vbscript:msgbox(1)",
	"ftp":                          "ftp://app.example.com/",
	"file":                         "file:///etc/passwd",
	"ws":                           "wss://app.example.com/",
	"https-no-slashes":             "https:evil.com",
	"https-one-slash":              "https:/evil.com",
	"https-three-slashes":          "https:///evil.com",
	"https-backslashes":            `https:\\evil.com`,
	"https-slash-backslash":        `https:/\evil.com`,
	"http-no-slashes-origin":       "http:app.example.com",
	"other-host":                   "https://evil.com/",
	"other-host-no-path":           "https://evil.com",
	"suffix-host":                  "https://app.example.com.evil.com/",
	"prefix-host":                  "https://evilapp.example.com/",
	"subdomain":                    "https://x.app.example.com/",
	"trailing-dot-host":            "https://app.example.com./",
	"userinfo-origin-at-evil":      "https://app.example.com@evil.com/",
	"userinfo-http":                "http://app.example.com@evil.com",
	"userinfo-same-host":           "https://user:pass@app.example.com/",
	"userinfo-empty":               "https://@app.example.com/",
	"userinfo-double-at":           "https://app.example.com@evil.com@app.example.com/",
	"fragment-at-origin":           "http://evil.com#@app.example.com",
	"query-at-origin":              "https://evil.com?@app.example.com/",
	"backslash-at-origin":          `http://evil.com\@app.example.com`,
	"backslash-in-authority":       `https://app.example.com\.evil.com/`,
	"encoded-dot-host":             "https://evil%2Ecom/",
	"encoded-at":                   "https://app.example.com%40evil.com/",
	"scheme-downgrade":             "http://app.example.com/",
	"wrong-port":                   "https://app.example.com:8443/",
	"default-port-other-scheme":    "https://app.example.com:80/",
	"ipv4-literal":                 "https://127.0.0.1/",
	"ipv4-decimal":                 "http://2130706433/",
	"ipv4-hex":                     "http://0x7f000001/",
	"ipv6-loopback":                "https://[::1]/",
	"ipv6-mapped":                  "https://[::ffff:127.0.0.1]/",
	"allowed-host-wrong-port":      "http://127.0.0.1/",
	"allowed-host-wrong-scheme":    "http://docs.example.com/",
	"relative-path-no-slash":       "dashboard",
	"relative-host-like":           "evil.com",
	"dot-slash":                    "./dashboard",
	"query-only":                   "?next=/",
	"fragment-only":                "#x",
	"idn-lookalike":                "https://аpp.example.com/",
	"unicode-path":                 "/café",
	"too-long":                     "/" + strings.Repeat("a", MaxReturnToLen),
	"dot-double-slash":             "/.//evil.com",
	"absolute-double-slash-path":   "https://app.example.com//evil.com",
	"encoded-scheme-relative-full": "%2F%2Fevil.com%2F",
	"mixed-case-scheme-other-host": "HtTpS://EvIl.CoM/",
}

func TestReturnToRejectsOpenRedirects(t *testing.T) {
	if n := len(openRedirectPayloads); n < 40 {
		t.Fatalf("only %d payloads, want at least 40", n)
	}
	for name, raw := range openRedirectPayloads {
		t.Run(name, func(t *testing.T) {
			got, err := ReturnTo(raw, testOrigin, testAllowed)
			if err == nil {
				t.Fatalf("ReturnTo(%q) = %q, want error", raw, got)
			}
			if !errors.Is(err, ErrUnsafeReturnTo) {
				t.Errorf("ReturnTo(%q) error = %v, want ErrUnsafeReturnTo", raw, err)
			}
			if got != "" {
				t.Errorf("ReturnTo(%q) returned %q with an error", raw, got)
			}
		})
	}
}

func TestReturnToRejectsBackslashHost(t *testing.T) {
	// Browsers treat "\" as "/" in http(s) URLs (WHATWG URL), so each of
	// these is a different host to a browser than to net/url.
	for _, raw := range []string{
		`/\evil.com`,
		`\/evil.com`,
		`\\evil.com`,
		`/\/evil.com`,
		`/\\evil.com`,
		`http://evil.com\@app.example.com`,
		`https://evil.com\app.example.com`,
		`https:\\evil.com`,
		`https:/\evil.com`,
		`https://app.example.com\@evil.com`,
		`/dashboard\..\..\evil.com`,
		"/%5Cevil.com",
		"/%5C%5Cevil.com",
		"/%255Cevil.com",
	} {
		if got, err := ReturnTo(raw, testOrigin, nil); err == nil {
			t.Errorf("ReturnTo(%q) = %q, want error", raw, got)
		}
	}
}

func TestReturnToAcceptsSameOrigin(t *testing.T) {
	tests := []struct {
		name, raw, origin string
		allowed           []string
		want              string
	}{
		{"root", "/", testOrigin, nil, "https://app.example.com/"},
		{"path", "/dashboard", testOrigin, nil, "https://app.example.com/dashboard"},
		{"nested-path", "/a/b/c.html", testOrigin, nil, "https://app.example.com/a/b/c.html"},
		{"query", "/search?q=go&page=2", testOrigin, nil, "https://app.example.com/search?q=go&page=2"},
		{"root-query", "/?next=%2Fx", testOrigin, nil, "https://app.example.com/?next=%2Fx"},
		{"fragment-dropped", "/doc#section-2", testOrigin, nil, "https://app.example.com/doc"},
		{"empty-query-dropped", "/doc?", testOrigin, nil, "https://app.example.com/doc"},
		{"query-with-url", "/go?to=https://evil.com", testOrigin, nil, "https://app.example.com/go?to=https://evil.com"},
		{"query-reescaped", `/q?a="<x>"&b=%zz`, testOrigin, nil, "https://app.example.com/q?a=%22%3Cx%3E%22&b=%25zz"},
		{"encoded-space-later", "/my%20docs/a%20b", testOrigin, nil, "https://app.example.com/my%20docs/a%20b"},
		{"encoded-slash-later-segment", "/files/a%2Fb", testOrigin, nil, "https://app.example.com/files/a%2Fb"},
		{"dot-segments", "/a/./b/../c", testOrigin, nil, "https://app.example.com/a/c"},
		{"dot-dot-double-slash", "/..//evil.com", testOrigin, nil, "https://app.example.com/evil.com"},
		{"encoded-utf8", "/caf%C3%A9", testOrigin, nil, "https://app.example.com/caf%C3%A9"},
		{"encoded-space-first", "/a%20b", testOrigin, nil, "https://app.example.com/a%20b"},
		{"dot-dot-above-root", "/../../etc", testOrigin, nil, "https://app.example.com/etc"},
		{"colon-in-path", "/a:b", testOrigin, nil, "https://app.example.com/a:b"},
		{"at-in-path", "/@evil.com", testOrigin, nil, "https://app.example.com/@evil.com"},
		{"semicolon-at-path", "/;@evil.com", testOrigin, nil, "https://app.example.com/;@evil.com"},
		{"absolute-same", "https://app.example.com/dashboard?x=1#frag", testOrigin, nil, "https://app.example.com/dashboard?x=1"},
		{"absolute-no-path", "https://app.example.com", testOrigin, nil, "https://app.example.com/"},
		{"absolute-query-no-path", "https://app.example.com?x=1", testOrigin, nil, "https://app.example.com/?x=1"},
		{"absolute-upper-case", "HTTPS://APP.Example.COM/Path", testOrigin, nil, "https://app.example.com/Path"},
		{"absolute-default-port", "https://app.example.com:443/x", testOrigin, nil, "https://app.example.com/x"},
		{"absolute-empty-port", "https://app.example.com:/x", testOrigin, nil, "https://app.example.com/x"},
		{"origin-default-port", "https://app.example.com/x", "https://app.example.com:443", nil, "https://app.example.com/x"},
		{"origin-trailing-slash", "/x", "https://app.example.com/", nil, "https://app.example.com/x"},
		{"origin-upper-case", "/x", "HTTPS://App.Example.com", nil, "https://app.example.com/x"},
		{"http-default-port", "http://app.internal:80/x", "http://app.internal", nil, "http://app.internal/x"},
		{"non-default-port", "https://app.example.com:8443/x", "https://app.example.com:8443", nil, "https://app.example.com:8443/x"},
		{"relative-non-default-port", "/x", "https://app.example.com:8443", nil, "https://app.example.com:8443/x"},
		{"ip-origin", "http://127.0.0.1:8080/x", "http://127.0.0.1:8080", nil, "http://127.0.0.1:8080/x"},
		{"ipv6-origin", "https://[::1]:8443/x", "https://[::1]:8443", nil, "https://[::1]:8443/x"},
		{"allowed", "https://docs.example.com/guide?v=2", testOrigin, testAllowed, "https://docs.example.com/guide?v=2"},
		{"allowed-default-port", "https://docs.example.com:443/", testOrigin, testAllowed, "https://docs.example.com/"},
		{"allowed-upper-case", "https://DOCS.example.com/", testOrigin, testAllowed, "https://docs.example.com/"},
		{"allowed-port", "http://127.0.0.1:8080/", testOrigin, testAllowed, "http://127.0.0.1:8080/"},
		{"allowed-entry-with-port", "https://docs.example.com/", testOrigin, []string{"bogus", "https://docs.example.com:443"}, "https://docs.example.com/"},
		{"max-length", "/" + strings.Repeat("a", MaxReturnToLen-1), testOrigin, nil, testOrigin + "/" + strings.Repeat("a", MaxReturnToLen-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReturnTo(tt.raw, tt.origin, tt.allowed)
			if err != nil {
				t.Fatalf("ReturnTo(%q, %q) error: %v", tt.raw, tt.origin, err)
			}
			if got != tt.want {
				t.Errorf("ReturnTo(%q, %q) = %q, want %q", tt.raw, tt.origin, got, tt.want)
			}
		})
	}
}

func TestReturnToInvalidOrigin(t *testing.T) {
	for _, origin := range []string{
		"", "app.example.com", "//app.example.com", "ftp://app.example.com",
		"https://user@app.example.com", "https://app.example.com/path",
		"https://app.example.com?x", "https://app.example.com#x", "https://",
		`https://app.example.com\`,
	} {
		if _, err := ReturnTo("/", origin, nil); !errors.Is(err, ErrInvalidOrigin) {
			t.Errorf("ReturnTo(%q, %q) error = %v, want ErrInvalidOrigin", "/", origin, err)
		}
	}
}

func FuzzReturnTo(f *testing.F) {
	for _, raw := range openRedirectPayloads {
		f.Add(raw)
	}
	for _, raw := range []string{
		"/", "/dashboard?x=1#y", "https://app.example.com/a", "https://docs.example.com/",
		"http://127.0.0.1:8080/x", "/a/../..//b", "/%2e%2e/%2e%2e//x",
	} {
		f.Add(raw)
	}
	want := map[string]bool{
		"https://app.example.com":  true,
		"https://docs.example.com": true,
		"http://127.0.0.1:8080":    true,
	}
	browserBase, err := url.Parse("https://unrelated.example.net/some/dir/page?q=1#f")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := ReturnTo(raw, testOrigin, testAllowed)
		if err != nil {
			if got != "" {
				t.Fatalf("ReturnTo(%q) = %q with error %v", raw, got, err)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("ReturnTo(%q) = %q, which does not parse: %v", raw, got, err)
		}
		if !u.IsAbs() || u.Opaque != "" || !want[u.Scheme+"://"+u.Host] {
			t.Fatalf("ReturnTo(%q) = %q: origin %q not allowed", raw, got, u.Scheme+"://"+u.Host)
		}
		if u.User != nil {
			t.Fatalf("ReturnTo(%q) = %q has userinfo", raw, got)
		}
		if u.Fragment != "" || strings.Contains(got, "#") {
			t.Fatalf("ReturnTo(%q) = %q has a fragment", raw, got)
		}
		if !strings.HasPrefix(u.EscapedPath(), "/") || strings.HasPrefix(u.EscapedPath(), "//") {
			t.Fatalf("ReturnTo(%q) = %q has path %q", raw, got, u.EscapedPath())
		}
		for _, r := range got {
			if r == '\\' || r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r) {
				t.Fatalf("ReturnTo(%q) = %q contains %U", raw, got, r)
			}
		}
		// A browser resolves the Location value against the current page.
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		if r := browserBase.ResolveReference(ref); r.Host != u.Host || r.Scheme != u.Scheme {
			t.Fatalf("ReturnTo(%q) = %q resolves to %q", raw, got, r)
		}
		// Validating the result again must be a no-op (unless adding the
		// origin pushed it over the length cap).
		if len(got) > MaxReturnToLen {
			return
		}
		again, err := ReturnTo(got, testOrigin, testAllowed)
		if err != nil || again != got {
			t.Fatalf("ReturnTo(ReturnTo(%q)) = %q, %v; want %q", raw, again, err, got)
		}
	})
}
