package fileerr

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ReadFile reads the file at path, refusing one of more than max bytes
// (a larger file is certainly a mistake, and YAML aliases could amplify it).
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}

// YAMLDocument parses data, named file in errors, as exactly one YAML
// document of at most max bytes, and returns its root node. Problems come
// back as Errors: a file that is too large or empty, a syntax error with
// its line, or a second document.
func YAMLDocument(file string, data []byte, max int) (*yaml.Node, Errors) {
	if len(data) > max {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("file is larger than %d bytes", max)}}
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
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	return root, nil
}

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: mapping values
// are not allowed in this context") into a positioned Error.
func syntaxError(file string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, convErr := strconv.Atoi(rest[:i]); convErr == nil {
				line = n
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
