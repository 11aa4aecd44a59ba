package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary YAML to Parse: it must never panic, and every
// failure must be an Errors list whose entries name the file, and carry a
// position and a field path unless they concern the whole file.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/bad/*.txt")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		txt := string(data)
		if i := strings.Index(txt, "-- gatehouse.yaml --\n"); i >= 0 {
			txt = txt[i+len("-- gatehouse.yaml --\n"):]
		}
		if j := strings.Index(txt, "-- want --\n"); j >= 0 {
			txt = txt[:j]
		}
		f.Add([]byte(txt))
	}
	if q, err := os.ReadFile("../../examples/quickstart.yaml"); err == nil {
		f.Add(q)
	}
	f.Add([]byte("a: &a [*a, *a]\nlisteners: *a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.yaml", data)
		if err == nil {
			if cfg == nil || len(cfg.Listeners) == 0 || len(cfg.Routes) == 0 {
				t.Fatalf("valid config without listeners or routes: %+v", cfg)
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
		}
		for _, e := range es {
			if e.File != "f.yaml" || e.Msg == "" {
				t.Fatalf("incomplete error %#v", e)
			}
			if e.Line < 0 || e.Col < 0 {
				t.Fatalf("negative position in %#v", e)
			}
		}
	})
}
