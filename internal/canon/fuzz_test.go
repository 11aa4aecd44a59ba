package canon

import (
	"errors"
	"net"
	"path"
	"strings"
	"testing"
)

var pathErrors = []error{
	ErrNotAbsolute, ErrInvalidEscape, ErrEncodedSeparator, ErrControl,
	ErrBackslash, ErrFragment, ErrPathParameter,
}

func FuzzPath(f *testing.F) {
	for _, s := range []string{
		"/", "/a/b/", "/a/../admin", "/%2e%2e/admin", "/a/%2E%2E/admin", "//admin",
		"/admin/./", "/admin%2Fx", "/admin%5Cx", `/a\b`, "/admin;jsessionid=1",
		"/%zz", "/%2", "/a%", "/a b/%c3%a9/\xff", "/a//../b", "/a/.%2e/", "/%41%7e",
		"/x/%252e%252e/", "/a#b", "/%23", "/\x00", "admin",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := Path(in)
		if err != nil {
			known := false
			for _, e := range pathErrors {
				if errors.Is(err, e) {
					known = true
				}
			}
			if !known {
				t.Fatalf("Path(%q) returned unknown error %v", in, err)
			}
			if out != "" {
				t.Fatalf("Path(%q) returned %q with error %v", in, out, err)
			}
			return
		}
		checkCanonical(t, out)
		// Differential check against path.Clean: the decoded canonical path
		// is the cleaned decoded input, plus the trailing slash Path keeps.
		dec := Decode(in)
		want := path.Clean(dec)
		if last := dec[strings.LastIndexByte(dec, '/')+1:]; want != "/" && (last == "" || last == "." || last == "..") {
			want += "/"
		}
		if got := Decode(out); got != want {
			t.Fatalf("Path(%q) = %q decodes to %q; path.Clean gives %q", in, out, got, want)
		}
	})
}

var hostErrors = []error{ErrEmptyHost, ErrInvalidHost, ErrInvalidPort}

func FuzzHost(f *testing.F) {
	for _, s := range []string{
		"example.com", "Example.COM.:443", "[::1]:80", "[2001:DB8::1]", "a..b",
		"example.com:", "1.2.3.4:0080", "::1", "[fe80::1%25eth0]", "[::1]x", "x:65536",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, tls bool) {
		out, err := Host(in, tls)
		if err != nil {
			known := false
			for _, e := range hostErrors {
				if errors.Is(err, e) {
					known = true
				}
			}
			if !known || out != "" {
				t.Fatalf("Host(%q) = %q, %v", in, out, err)
			}
			return
		}
		again, err := Host(out, tls)
		if err != nil || again != out {
			t.Fatalf("Host(%q) = %q; Host(%q) = %q, %v", in, out, out, again, err)
		}
		if strings.ToLower(out) != out {
			t.Fatalf("Host(%q) = %q is not lower case", in, out)
		}
		name, port := out, ""
		if h, p, err := net.SplitHostPort(out); err == nil {
			name, port = h, p
		} else if strings.HasPrefix(out, "[") {
			name = out[1 : len(out)-1]
		}
		if strings.HasSuffix(name, ".") {
			t.Fatalf("Host(%q) = %q keeps a trailing dot", in, out)
		}
		if (tls && port == "443") || (!tls && port == "80") || strings.HasPrefix(port, "0") {
			t.Fatalf("Host(%q, %v) = %q keeps a default or padded port", in, tls, out)
		}
		if strings.ContainsAny(out, "%@/\\?# ") {
			t.Fatalf("Host(%q) = %q contains a delimiter", in, out)
		}
	})
}
