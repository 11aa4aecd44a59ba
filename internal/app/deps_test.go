package app

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// allowedImports lists, for each package, the gatehouse packages it may
// import directly. Feature packages never import config (they take their own
// Options), packages on one layer do not import each other, and nothing
// imports the composition root. A new package must be added here, which
// makes its place in the layering a deliberate decision.
var allowedImports = map[string][]string{
	"internal/canon":     nil,
	"internal/route":     nil,
	"internal/secret":    nil,
	"internal/idheader":  nil,
	"internal/audit":     nil,
	"internal/metrics":   nil,
	"internal/demoapp":   nil,
	"internal/upstream":  nil,
	"internal/listener":  nil,
	"internal/assertion": nil,
	"internal/idp":       {"internal/fileerr"},
	"internal/oidc":      {"internal/token"},
	"internal/auth":      {"internal/assertion", "internal/audit", "internal/oidc", "internal/policy", "internal/session", "internal/token"},
	"internal/testenv":   nil,
	"internal/spop":      nil,
	"internal/metabase":  {"internal/secret"},
	"internal/haproxy":   {"internal/audit", "internal/auth", "internal/canon", "internal/idheader", "internal/listener", "internal/proxy", "internal/spop"},
	"internal/policy":    nil,
	"internal/session":   nil,
	"internal/token":     nil,
	"internal/fileerr":   nil,
	"internal/config":    {"internal/canon", "internal/fileerr", "internal/policy", "internal/secret"},
	"internal/proxy":     {"internal/audit", "internal/canon", "internal/idheader", "internal/listener", "internal/route", "internal/upstream"},
	"internal/app":       {"*"},
	"cmd/gatehouse":      {"examples", "internal/app", "internal/config", "internal/demoapp", "internal/idp"},
	"examples":           nil,
	"bench/credentials":  {"internal/session", "internal/testenv"},
	"bench/floor":        {"internal/config", "internal/proxy", "internal/upstream"},

	"internal/metabase/metabasetest": nil,
}

func TestImportLayering(t *testing.T) {
	const module = "github.com/gatehouse-proxy/gatehouse/"
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		allowed, known := allowedImports[pkg]
		if !known {
			t.Errorf("package %s is not in allowedImports: decide which gatehouse packages it may import", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if !slices.Contains(allowed, "*") && !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which the layering does not allow", pkg, dep)
			}
		}
	}
}
