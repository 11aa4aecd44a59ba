package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
