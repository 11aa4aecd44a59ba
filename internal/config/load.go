package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-proxy/gatehouse/internal/fileerr"
)

// Error is one problem in a configuration file, with its position and the
// dotted path of the field it concerns.
type Error = fileerr.Error

// Errors is every problem found in a file, sorted by position. Its Error
// method prints one problem per line.
type Errors = fileerr.Errors

// maxFileSize bounds the configuration file; a larger file is certainly a
// mistake and YAML aliases could otherwise amplify it.
const maxFileSize = 4 << 20

// Load reads, decodes and validates the file at path. A returned error is
// an Errors listing every problem found (or a plain error when the file
// cannot be read).
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data, naming file in error messages.
func Parse(file string, data []byte) (*Config, error) {
	if len(data) > maxFileSize {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("file is larger than %d bytes", maxFileSize)}}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: file, Msg: "file is empty"}}
		}
		return nil, Errors{syntaxError(file, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{File: file, Line: extra.Line, Col: extra.Column, Msg: "only one YAML document is allowed"}}
	}
	cfg := Default()
	d := &decoder{file: file, where: map[string]pos{}, keyPos: map[string]pos{}}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	v := &validator{d: d}
	v.validate(cfg)
	if len(d.errs) > 0 {
		es := Errors(d.errs)
		es.Sort()
		return nil, es
	}
	return cfg, nil
}

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: mapping values
// are not allowed in this context") into a positioned Error.
func syntaxError(file string, err error) *Error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if strings.HasPrefix(msg, "line ") {
		rest := msg[len("line "):]
		if i := strings.Index(rest, ":"); i > 0 {
			if _, scanErr := fmt.Sscanf(rest[:i], "%d", &line); scanErr == nil {
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	e := &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
	if line > 0 {
		e.Col = 1
	}
	return e
}
