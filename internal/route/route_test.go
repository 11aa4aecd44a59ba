package route

import "testing"

func TestMatchMostSpecific(t *testing.T) {
	tbl, err := New([]Entry[string]{
		{Host: "", Path: "/", Value: "any-root"},
		{Host: "", Path: "/api", Value: "any-api"},
		{Host: "app.example.com", Path: "/", Value: "app-root"},
		{Host: "app.example.com", Path: "/admin", Value: "app-admin"},
		{Host: "*.example.com", Path: "/", Value: "wild"},
		{Host: "*.eu.example.com", Path: "/", Value: "wild-eu"},
		{Host: "*.example.com", Path: "/static", Value: "wild-static"},
		{Host: "only.example.org", Path: "/x", Value: "only-x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, path, want string
	}{
		{"exact host root", "app.example.com", "/dash", "app-root"},
		{"exact host longest prefix", "app.example.com", "/admin/users", "app-admin"},
		{"prefix is segment bound", "app.example.com", "/administrator", "app-root"},
		{"exact prefix equal", "app.example.com", "/admin", "app-admin"},
		{"port ignored", "app.example.com:8443", "/admin", "app-admin"},
		{"wildcard", "other.example.com", "/", "wild"},
		{"wildcard multi label", "a.b.example.com", "/static/x.js", "wild-static"},
		{"longest wildcard suffix first", "x.eu.example.com", "/", "wild-eu"},
		{"wildcard needs a label", "example.com", "/", "any-root"},
		{"suffix must be whole labels", "evilexample.com", "/", "any-root"},
		{"exact host falls through to any", "only.example.org", "/api/v1", "any-api"},
		{"any host", "unknown.test", "/api", "any-api"},
		{"ipv6 host", "[::1]:8080", "/", "any-root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tbl.Match(tc.host, tc.path)
			if !ok || got != tc.want {
				t.Errorf("Match(%q, %q) = %q, %v; want %q", tc.host, tc.path, got, ok, tc.want)
			}
		})
	}
}

func TestNoMatch(t *testing.T) {
	tbl, err := New([]Entry[int]{{Host: "a.test", Path: "/x", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{"a.test", "/"}, {"a.test", "/xy"}, {"b.test", "/x"}} {
		if v, ok := tbl.Match(c[0], c[1]); ok {
			t.Errorf("Match(%q, %q) = %v; want no match", c[0], c[1], v)
		}
	}
}

func TestNewRejectsDuplicates(t *testing.T) {
	_, err := New([]Entry[int]{{Path: "/a"}, {Path: "/a"}})
	if err == nil {
		t.Fatal("want error for duplicate routes")
	}
	if _, err := New([]Entry[int]{{Path: "/a/"}}); err == nil {
		t.Fatal("want error for trailing slash")
	}
}

func BenchmarkMatch(b *testing.B) {
	var entries []Entry[int]
	for i, h := range []string{"a.example.com", "b.example.com", "c.example.com", "*.example.com", ""} {
		for j, p := range []string{"/", "/api", "/admin", "/static/assets"} {
			entries = append(entries, Entry[int]{Host: h, Path: p, Value: i*10 + j})
		}
	}
	tbl, err := New(entries)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tbl.Match("b.example.com", "/api/dashboard/12"); !ok {
			b.Fatal("no match")
		}
	}
}

func TestHasHost(t *testing.T) {
	tbl, err := New([]Entry[int]{
		{Host: "app.example.com", Path: "/api"},
		{Host: "*.example.org", Path: "/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"app.example.com":      true,
		"app.example.com:8080": true,
		"a.example.org":        true,
		"example.org":          false,
		"other.example.com":    false,
	} {
		if got := tbl.HasHost(host); got != want {
			t.Errorf("HasHost(%q) = %v; want %v", host, got, want)
		}
	}
	anyHost, _ := New([]Entry[int]{{Path: "/x"}})
	if !anyHost.HasHost("whatever.test") {
		t.Error("a route for any host serves every host")
	}
}
