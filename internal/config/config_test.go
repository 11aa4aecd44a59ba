package config

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files with the current output")

// goldenCase is a testdata file: a description, then "-- gatehouse.yaml --"
// and the config, then "-- want --" and the exact expected errors.
type goldenCase struct {
	desc, config, want string
}

func readGolden(t *testing.T, path string) goldenCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	const cfgSep, wantSep = "-- gatehouse.yaml --\n", "-- want --\n"
	i, j := strings.Index(s, cfgSep), strings.Index(s, wantSep)
	if i < 0 || j < i {
		t.Fatalf("%s: want sections %q and %q", path, cfgSep, wantSep)
	}
	return goldenCase{desc: s[:i], config: s[i+len(cfgSep) : j], want: s[j+len(wantSep):]}
}

func TestGoldenBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			g := readGolden(t, f)
			_, err := Parse("gatehouse.yaml", []byte(g.config))
			if err == nil {
				t.Fatal("Parse succeeded; want errors")
			}
			got := err.Error() + "\n"
			if *update {
				out := g.desc + "-- gatehouse.yaml --\n" + g.config + "-- want --\n" + got
				if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(g.want, got); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExampleConfigsValid(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("../../examples/*/*.yaml")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
}

// A metabase route opens Metabase's public paths and gives its upstream a
// response header timeout above Metabase's 20-minute query timeout,
// unless the upstream sets one.
func TestMetabaseRouteDefaults(t *testing.T) {
	src := `
listeners: [{address: 127.0.0.1:8080}]
identity: {builtin: {demo_users: true}}
public_url: http://127.0.0.1:8080
upstreams:
  mb: {targets: [http://127.0.0.1:3000]}
  mb2: {targets: [http://127.0.0.1:3001], response_header_timeout: 30m}
  other: {targets: [http://127.0.0.1:4000]}
routes:
  - name: mb
    upstream: mb
    metabase: {}
    policy: {public: [/hello], allow: [{authenticated: true}]}
  - name: mb2
    host: two.test
    upstream: mb2
    metabase: {public_paths: [/api/health]}
    policy: {allow: [{authenticated: true}]}
  - name: other
    host: other.test
    upstream: other
    policy: {public: [/]}
`
	c, err := Parse("gatehouse.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Upstreams["mb"].ResponseHeaderTimeout.D(); got != 21*time.Minute {
		t.Errorf("mb response_header_timeout = %v, want 21m", got)
	}
	if got := c.Upstreams["mb2"].ResponseHeaderTimeout.D(); got != 30*time.Minute {
		t.Errorf("mb2 response_header_timeout = %v, want the written 30m", got)
	}
	if got := c.Upstreams["other"].ResponseHeaderTimeout.D(); got != time.Minute {
		t.Errorf("other response_header_timeout = %v, want the default 60s", got)
	}
	want := append([]string{"/hello"}, MetabasePublicPaths...)
	if got := c.Routes[0].Policy.Public; !slices.Equal(got, want) {
		t.Errorf("mb policy.public = %v, want %v", got, want)
	}
	if got := c.Routes[1].Policy.Public; !slices.Equal(got, []string{"/api/health"}) {
		t.Errorf("mb2 policy.public = %v", got)
	}
}
