package config

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConfigDocInSync regenerates docs/config.md from the field comments in
// config.go and fails when the file differs: the comments are the
// reference, and the document cannot drift from them. Run
// `go test ./internal/config -run TestConfigDocInSync -update` after
// changing the schema.
func TestConfigDocInSync(t *testing.T) {
	got := generateDoc(t)
	const path = "../../docs/config.md"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with -update)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("docs/config.md is out of date; run go test ./internal/config -run TestConfigDocInSync -update\n%s", diff)
	}
}

// TestEveryFieldDocumented fails for a field with no comment, so the
// generated reference never has an empty row.
func TestEveryFieldDocumented(t *testing.T) {
	docs := parseDocs(t)
	walkFields(reflect.TypeOf(Config{}), "", func(path string, owner reflect.Type, f reflect.StructField) {
		if docs[owner.Name()+"."+f.Name] == "" {
			t.Errorf("%s (%s.%s) has no doc comment", path, owner.Name(), f.Name)
		}
	})
}

// schemaFiles hold the schema types whose comments are the reference.
var schemaFiles = []string{"config.go", "identity.go"}

// parseDocs returns "Type.Field" and "Type" → doc comment, from the schema
// files.
func parseDocs(t *testing.T) map[string]string {
	t.Helper()
	docs := map[string]string{}
	for _, name := range schemaFiles {
		parseDocFile(t, name, docs)
	}
	return docs
}

func parseDocFile(t *testing.T, name string, docs map[string]string) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, spec := range gd.Specs {
			ts := spec.(*ast.TypeSpec)
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				continue
			}
			docs[ts.Name.Name] = gd.Doc.Text()
			for _, fld := range st.Fields.List {
				for _, n := range fld.Names {
					docs[ts.Name.Name+"."+n.Name] = fld.Doc.Text()
				}
			}
		}
	}
}

// walkFields calls fn for every leaf field (not a struct of the schema) in
// YAML path order; lists show as [] and maps as <name>.
func walkFields(t reflect.Type, prefix string, fn func(path string, owner reflect.Type, f reflect.StructField)) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" {
			continue
		}
		path := join(prefix, tag)
		fn(path, t, f)
		if st, suffix := schemaStruct(f.Type); st != nil {
			walkFields(st, path+suffix, fn)
		}
	}
}

// schemaStruct returns the schema struct inside ft (through pointers,
// lists and maps) and the path suffix for the container, or nil for a leaf.
func schemaStruct(ft reflect.Type) (reflect.Type, string) {
	suffix := ""
	for {
		switch ft.Kind() {
		case reflect.Pointer:
			ft = ft.Elem()
			continue
		case reflect.Slice:
			ft, suffix = ft.Elem(), suffix+"[]"
			continue
		case reflect.Map:
			ft, suffix = ft.Elem(), suffix+".<name>"
			continue
		}
		break
	}
	if ft.Kind() == reflect.Struct && ft.PkgPath() == reflect.TypeOf(Config{}).PkgPath() && !isLeafType(ft) {
		return ft, suffix
	}
	return nil, ""
}

func isLeafType(t reflect.Type) bool {
	switch t {
	case reflect.TypeOf(URL{}), reflect.TypeOf(Prefix{}), reflect.TypeOf(SecretRef{}), reflect.TypeOf(Target{}):
		return true
	}
	return false
}

func typeName(ft reflect.Type) string {
	switch ft {
	case reflect.TypeOf(Duration(0)):
		return "duration"
	case reflect.TypeOf(URL{}):
		return "URL"
	case reflect.TypeOf(Target{}):
		return "URL or {url, weight}"
	case reflect.TypeOf(Prefix{}):
		return "CIDR"
	case reflect.TypeOf(SecretRef{}):
		return "secret reference"
	}
	switch ft.Kind() {
	case reflect.Pointer:
		return typeName(ft.Elem())
	case reflect.Slice:
		return "list of " + typeName(ft.Elem())
	case reflect.Map:
		return "map of name → " + typeName(ft.Elem())
	case reflect.Struct:
		return "mapping"
	case reflect.Int:
		return "integer"
	case reflect.Bool:
		return "boolean"
	}
	return ft.Kind().String()
}

var defaultRE = regexp.MustCompile(`(?s)\s*Default: (.*?)\.?\s*$`)

func generateDoc(t *testing.T) string {
	docs := parseDocs(t)
	var b strings.Builder
	b.WriteString("<!-- Generated from internal/config/config.go by TestConfigDocInSync; do not edit. -->\n")
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("gatehouse reads one YAML file (`gatehouse serve -config FILE`). Unknown keys, wrong types and\n")
	b.WriteString("invalid values are errors; `gatehouse check -config FILE` prints every problem at once as\n")
	b.WriteString("`FILE:LINE:COL: field.path: message`. Durations are Go durations (`30s`, `5m`, `1h30m`).\n")
	b.WriteString("Secrets are never written in the file: a secret field takes a reference, `env:NAME` or\n")
	b.WriteString("`file:/abs/path`, and a literal value is refused. SIGHUP reloads the file; a bad file is\n")
	b.WriteString("logged and the running configuration kept. `listeners`, `server`, `admin.address`, `audit`\n")
	b.WriteString("and `log` take effect only at restart.\n\n")
	b.WriteString("A list is written `[]` and a map key `<name>` in the paths below.\n")
	var section func(st reflect.Type, prefix string)
	section = func(st reflect.Type, prefix string) {
		title := prefix
		if title == "" {
			title = "Top level"
		}
		fmt.Fprintf(&b, "\n## %s\n\n", "`"+title+"`")
		if d := strings.TrimSpace(docs[st.Name()]); d != "" {
			b.WriteString(userText(st.Name(), oneLine(d)) + "\n\n")
		}
		b.WriteString("| Field | Type | Default | Description |\n|---|---|---|---|\n")
		var nested []func()
		for i := range st.NumField() {
			f := st.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "" {
				continue
			}
			path := join(prefix, tag)
			d := docs[st.Name()+"."+f.Name]
			def := ""
			if m := defaultRE.FindStringSubmatch(d); m != nil {
				def = "`" + oneLine(m[1]) + "`"
				d = d[:len(d)-len(m[0])]
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", path, typeName(f.Type), def, escapeCell(userText(f.Name, oneLine(d))))
			if sub, suffix := schemaStruct(f.Type); sub != nil {
				nested = append(nested, func() { section(sub, path+suffix) })
			}
		}
		for _, n := range nested {
			n()
		}
	}
	section(reflect.TypeOf(Config{}), "")
	return b.String()
}

// userText drops the Go name a doc comment starts with ("Listeners are the
// addresses..." becomes "The addresses..."), for readers of the YAML.
func userText(goName, d string) string {
	for _, verb := range []string{" is ", " are "} {
		if rest, ok := strings.CutPrefix(d, goName+verb); ok && rest != "" {
			return strings.ToUpper(rest[:1]) + rest[1:]
		}
	}
	return d
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
