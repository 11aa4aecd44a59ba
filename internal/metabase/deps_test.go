package metabase

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsStayDownward: the package is a library below the composition
// root; it must not import config, auth or app (STYLE.md).
func TestImportsStayDownward(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	const mod = "github.com/gatehouse-proxy/gatehouse/internal/"
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if rest, ok := strings.CutPrefix(p, mod); ok && rest != "secret" {
				t.Errorf("%s imports %s; only internal/secret is allowed", f, p)
			}
		}
	}
}

// FuzzDetailRedacts: whatever a server answers, the excerpt in an error
// never contains the call's secret.
func FuzzDetailRedacts(f *testing.F) {
	f.Add([]byte(`{"errors":{"password":"sekret-123"}}`), "sekret-123", "application/json")
	f.Add([]byte("x sek\x00ret-123 y"), "sek ret-123", "text/plain")
	f.Add([]byte(`{"message":"a\u0000b"}`), "a b", "application/json")
	f.Fuzz(func(t *testing.T, body []byte, sec, ct string) {
		if len(sec) < 4 || strings.Contains("[redacted]…", sec) {
			return
		}
		if got := detail(body, ct, []string{sec}); strings.Contains(got, sec) {
			t.Errorf("detail(%q) = %q contains %q", body, got, sec)
		}
	})
}
