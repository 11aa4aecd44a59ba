package config

import (
	"reflect"

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
	data, err := fileerr.ReadFile(path, maxFileSize)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes and validates data, naming file in error messages.
func Parse(file string, data []byte) (*Config, error) {
	root, errs := fileerr.YAMLDocument(file, data, maxFileSize)
	if errs != nil {
		return nil, errs
	}
	cfg := Default()
	d := &decoder{file: file, where: map[string]pos{}, keyPos: map[string]pos{}}
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
