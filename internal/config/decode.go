package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// nodeDecoder is implemented by field types that parse themselves from a
// scalar YAML node (durations, URLs, CIDRs, secret references). The returned
// error message is reported at the node's position under the field's path.
type nodeDecoder interface {
	decodeNode(n *yaml.Node) error
}

// mappingForm marks a nodeDecoder that also accepts a mapping (such as a
// target's {url, weight}). Its decodeNode reports problems with a key as
// *keyError values (joined with errors.Join), so each is positioned at the
// key's value.
type mappingForm interface {
	nodeDecoder
	acceptsMapping()
}

// keyError is a problem with the value of one key of a mapping that a
// mappingForm decodes.
type keyError struct {
	node *yaml.Node // the value, or the mapping for a missing key
	key  string
	msg  string
}

func (e *keyError) Error() string { return e.key + ": " + e.msg }

// nodeErrors records err, from a nodeDecoder of n: each keyError at its own
// node and path, anything else at n.
func (d *decoder) nodeErrors(n *yaml.Node, path string, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var ke *keyError
		if errors.As(e, &ke) {
			d.errorf(ke.node, path+"."+ke.key, "%s", ke.msg)
			continue
		}
		d.errorf(n, path, "%v", e)
	}
}

// defaulter is implemented by struct types whose elements inside lists and
// maps need defaults before the YAML is decoded over them.
type defaulter interface {
	setDefaults()
}

// pos is a position in the configuration file (1-based).
type pos struct{ line, col int }

// decoder walks a yaml.Node tree into Go values by reflection, collecting
// every problem instead of stopping at the first one, and remembering where
// each field path was written so validation can report positions too.
type decoder struct {
	file   string
	errs   []*Error
	where  map[string]pos // field path → position of its value
	keyPos map[string]pos // field path → position of its key
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.where[path] = pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an explicit null keeps the default
	}
	if v.CanAddr() {
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			_, mapping := nd.(mappingForm)
			if n.Kind != yaml.ScalarNode && (!mapping || n.Kind != yaml.MappingNode) {
				d.errorf(n, path, "want a single value, got %s", kindName(n))
				return
			}
			if err := nd.decodeNode(n); err != nil {
				d.nodeErrors(n, path, err)
			}
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			if df, ok := v.Interface().(defaulter); ok {
				df.setDefaults()
			}
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			e := s.Index(i)
			if df, ok := e.Addr().Interface().(defaulter); ok {
				df.setDefaults()
			}
			d.decode(c, e, fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "want a mapping, got %s", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" || k.Value == "" {
				d.errorf(k, path, "keys must be non-empty names")
				continue
			}
			p := path + "." + k.Value
			if seen[k.Value] {
				d.errorf(k, p, "duplicate key %q", k.Value)
				continue
			}
			seen[k.Value] = true
			d.keyPos[p] = pos{k.Line, k.Column}
			e := reflect.New(v.Type().Elem()).Elem()
			if df, ok := e.Addr().Interface().(defaulter); ok {
				df.setDefaults()
			}
			d.decode(val, e, p)
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errorf(n, path, "want true or false, got %s", kindName(n))
			return
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.errorf(n, path, "want an integer, got %s", kindName(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, v.Type().Bits())
		if err != nil {
			d.errorf(n, path, "integer out of range")
			return
		}
		v.SetInt(i)
	default:
		panic(fmt.Sprintf("config: unsupported field kind %s at %s", v.Kind(), path))
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping, got %s", kindName(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, p, "unknown field%s", suggest(k.Value, fields))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, p, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		d.keyPos[p] = pos{k.Line, k.Column}
		d.decode(val, v.Field(idx), p)
	}
}

// structFields maps YAML keys to field indexes.
func structFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		m[tag] = i
	}
	return m
}

// suggest returns a "did you mean" hint for a misspelt key, or the list of
// valid keys when nothing is close.
func suggest(key string, fields map[string]int) string {
	names := make([]string, 0, len(fields))
	best, bestDist := "", 3
	for name := range fields {
		names = append(names, name)
		if dist := editDistance(strings.ToLower(key), name); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	sort.Strings(names)
	return " (want one of " + strings.Join(names, ", ") + ")"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("string %q", truncate(n.Value, 40))
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("%s %s", strings.TrimPrefix(n.ShortTag(), "!!"), truncate(n.Value, 40))
		}
	}
	return "an unexpected node"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
