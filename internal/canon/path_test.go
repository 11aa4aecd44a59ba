package canon

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// pathCase is one Path input with either its canonical output or the error
// it must produce.
type pathCase struct {
	name string
	in   string
	want string
	err  error
}

func runPathCases(t *testing.T, cases []pathCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Path(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Path(%q) = %q, %v; want error %v", tc.in, got, err, tc.err)
				}
				if got != "" {
					t.Errorf("Path(%q) returned %q along with an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Path(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			checkCanonical(t, got)
		})
	}
}

// checkCanonical asserts the properties every output of Path must have.
func checkCanonical(t *testing.T, out string) {
	t.Helper()
	if !strings.HasPrefix(out, "/") {
		t.Errorf("output %q does not start with /", out)
	}
	if strings.Contains(out, "//") {
		t.Errorf("output %q contains //", out)
	}
	for _, seg := range strings.Split(out, "/") {
		if seg == "." || seg == ".." {
			t.Errorf("output %q has dot-segment %q", out, seg)
		}
	}
	for i := 0; i < len(out); i++ {
		c := out[i]
		switch {
		case c == '%':
			if i+2 >= len(out) || unhex(out[i+1]) < 0 || unhex(out[i+2]) < 0 {
				t.Fatalf("output %q has a malformed escape at %d", out, i)
			}
			if out[i+1] >= 'a' || out[i+2] >= 'a' {
				t.Errorf("output %q has a lower-case escape at %d", out, i)
			}
			v := byte(unhex(out[i+1])<<4 | unhex(out[i+2]))
			if isUnreserved(v) || checkDecoded(v) != nil {
				t.Errorf("output %q keeps escape %s", out, out[i:i+3])
			}
			i += 2
		case c == '/':
		case class[c] != clsRaw:
			t.Errorf("output %q has byte %#x that is not allowed raw", out, c)
		}
	}
	again, err := Path(out)
	if err != nil || again != out {
		t.Errorf("Path(%q) = %q, %v; not idempotent", out, again, err)
	}
	u := url.URL{Path: Decode(out), RawPath: out}
	if got := u.EscapedPath(); got != out {
		t.Errorf("url.URL{Path: Decode(%q), RawPath: %[1]q}.EscapedPath() = %q", out, got)
	}
}

func TestPathUnchanged(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "root", in: "/", want: "/"},
		{name: "simple", in: "/a/b/c", want: "/a/b/c"},
		{name: "trailing-slash", in: "/a/b/", want: "/a/b/"},
		{name: "sub-delims", in: "/a!$&'()*+,=:@b", want: "/a!$&'()*+,=:@b"},
		{name: "unreserved", in: "/AZaz09-._~", want: "/AZaz09-._~"},
		{name: "dots-inside-segment", in: "/a.b/...c/.d/e./...", want: "/a.b/...c/.d/e./..."},
		{name: "kept-escapes", in: "/a%20b%25c%3Fd%3B%C3%A9", want: "/a%20b%25c%3Fd%3B%C3%A9"},
		{name: "metabase-api", in: "/api/card/12/query", want: "/api/card/12/query"},
	})
}

func TestPathRewritten(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "decode-unreserved", in: "/%41%7a%30%2D%2e%5F%7E", want: "/Az0-._~"},
		{name: "upper-case-hex", in: "/a%c3%a9%3f", want: "/a%C3%A9%3F"},
		{name: "encode-space", in: "/a b", want: "/a%20b"},
		{name: "encode-specials", in: "/\"<>[]^`{|}?", want: "/%22%3C%3E%5B%5D%5E%60%7B%7C%7D%3F"},
		{name: "encode-non-ascii", in: "/caf\xc3\xa9", want: "/caf%C3%A9"},
		{name: "encode-invalid-utf8", in: "/\xff", want: "/%FF"},
		{name: "merge-slashes", in: "/a//b///c", want: "/a/b/c"},
		{name: "merge-trailing-slashes", in: "/a//", want: "/a/"},
		{name: "only-slashes", in: "///", want: "/"},
		{name: "dot", in: "/a/./b", want: "/a/b"},
		{name: "trailing-dot", in: "/a/.", want: "/a/"},
		{name: "trailing-dot-dot", in: "/a/b/..", want: "/a/"},
		{name: "dot-dot-to-root", in: "/a/..", want: "/"},
		{name: "root-dot", in: "/.", want: "/"},
		{name: "empty-segments-dropped-before-dot-dot", in: "/a//../b", want: "/b"},
		{name: "decoded-dot-segment", in: "/a/%2e/b", want: "/a/b"},
		{name: "deep-stack", in: "/" + strings.Repeat("x/", 40) + strings.Repeat("../", 39) + "y", want: "/x/y"},
	})
}

func TestDotSegmentTraversalResolved(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "parent", in: "/a/../admin", want: "/admin"},
		{name: "encoded-lower", in: "/%2e%2e/admin", want: "/admin"},
		{name: "encoded-upper", in: "/a/%2E%2E/admin", want: "/admin"},
		{name: "half-encoded", in: "/a/.%2e/admin", want: "/admin"},
		{name: "above-root-clamps", in: "/../../../admin", want: "/admin"},
		{name: "public-then-up", in: "/public/../admin/users", want: "/admin/users"},
		{name: "dot-trailing", in: "/admin/./", want: "/admin/"},
		{name: "dot-dot-after-double-slash", in: "/public//..//admin", want: "/admin"},
	})
}

func TestDoubleSlashMerged(t *testing.T) {
	// "//admin" as a path must not be read as a network-path reference
	// (authority "admin") by any later URL handling.
	runPathCases(t, []pathCase{
		{name: "leading", in: "//admin", want: "/admin"},
		{name: "leading-many", in: "////admin//x", want: "/admin/x"},
	})
}

func TestEncodedSlashRejected(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "upper", in: "/admin%2Fx", err: ErrEncodedSeparator},
		{name: "lower", in: "/admin%2fx", err: ErrEncodedSeparator},
		{name: "dot-dot-slash", in: "/public/..%2Fadmin", err: ErrEncodedSeparator},
	})
}

func TestEncodedBackslashRejected(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "upper", in: "/admin%5Cx", err: ErrEncodedSeparator},
		{name: "lower", in: "/public/..%5cadmin", err: ErrEncodedSeparator},
	})
}

func TestBackslashRejected(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "inner", in: `/a\b`, err: ErrBackslash},
		{name: "dot-dot", in: `/public\..\admin`, err: ErrBackslash},
	})
}

func TestPathParameterRejected(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "jsessionid", in: "/admin;jsessionid=1", err: ErrPathParameter},
		{name: "segment-param", in: "/public;/../admin", err: ErrPathParameter},
		{name: "dot-dot-param", in: "/public/..;/admin", err: ErrPathParameter},
		// An encoded ";" is data, not a parameter delimiter, and is kept encoded.
		{name: "encoded-kept", in: "/a%3bb", want: "/a%3Bb"},
	})
}

func TestFragmentRejected(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "raw", in: "/admin#x", err: ErrFragment},
		{name: "encoded", in: "/admin%23x", err: ErrFragment},
	})
}

func TestControlCharacterRejected(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "raw-nul", in: "/a\x00b", err: ErrControl},
		{name: "raw-cr", in: "/a\rb", err: ErrControl},
		{name: "raw-tab", in: "/a\tb", err: ErrControl},
		{name: "raw-del", in: "/a\x7fb", err: ErrControl},
		{name: "encoded-nul", in: "/admin%00.png", err: ErrControl},
		{name: "encoded-lf", in: "/a%0a", err: ErrControl},
		{name: "encoded-crlf-injection", in: "/a%0D%0ASet-Cookie:x", err: ErrControl},
		{name: "encoded-del", in: "/a%7F", err: ErrControl},
	})
}

func TestMalformedEscapeRejected(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "non-hex", in: "/%zz", err: ErrInvalidEscape},
		{name: "one-digit", in: "/%2", err: ErrInvalidEscape},
		{name: "trailing-percent", in: "/a%", err: ErrInvalidEscape},
		{name: "half-hex", in: "/%2g/x", err: ErrInvalidEscape},
		{name: "double-percent", in: "/%%41", err: ErrInvalidEscape},
	})
}

func TestRelativePathRejected(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "empty", in: "", err: ErrNotAbsolute},
		{name: "relative", in: "admin", err: ErrNotAbsolute},
		{name: "asterisk", in: "*", err: ErrNotAbsolute},
		{name: "absolute-uri", in: "http://evil/admin", err: ErrNotAbsolute},
		{name: "backslash-first", in: `\admin`, err: ErrNotAbsolute},
	})
}

func TestDoubleEncodingKept(t *testing.T) {
	// "%25" stays encoded: gatehouse decodes once, as the upstream does. An
	// upstream that decodes twice is out of scope, but the policy sees the
	// same "%252F" the upstream gets.
	runPathCases(t, []pathCase{
		{name: "double-encoded-slash", in: "/admin%252Fx", want: "/admin%252Fx"},
		{name: "double-encoded-dot", in: "/%252e%252e/admin", want: "/%252e%252e/admin"},
	})
}

func TestPathErrorDoesNotEchoInput(t *testing.T) {
	in := "/" + strings.Repeat("secret", 1000) + "%2F"
	_, err := Path(in)
	if err == nil {
		t.Fatal("Path accepted an encoded slash")
	}
	if strings.Contains(err.Error(), "secret") || len(err.Error()) > 100 {
		t.Errorf("error message echoes the input: %q", err)
	}
}

// TestErrorsWinOverRewrites checks that an error late in the input is found
// even when an earlier part already needs rewriting.
func TestErrorsWinOverRewrites(t *testing.T) {
	runPathCases(t, []pathCase{
		{name: "after-dot-dot", in: "/a/../b%2F", err: ErrEncodedSeparator},
		{name: "after-space", in: "/a b;c", err: ErrPathParameter},
		{name: "after-double-slash", in: "//a%", err: ErrInvalidEscape},
	})
}

func TestPathCleanDoesNotAllocate(t *testing.T) {
	for _, p := range []string{"/", "/api/dashboard/12", "/a%20b/c/", "/static/app.4f3e2a.js"} {
		allocs := testing.AllocsPerRun(100, func() {
			if out, err := Path(p); err != nil || out != p {
				t.Fatalf("Path(%q) = %q, %v", p, out, err)
			}
		})
		if allocs != 0 {
			t.Errorf("Path(%q) allocates %v times; want 0", p, allocs)
		}
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"/a%20b", "/a b"},
		{"/%C3%A9%3F", "/é?"},
		{"/%25", "/%"},
		{"/bad%", "/bad%"},
		{"/bad%zz", "/bad%zz"},
	} {
		if got := Decode(tc.in); got != tc.want {
			t.Errorf("Decode(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}
