// Package examples holds gatehouse's example configurations. The quickstart
// configuration is embedded in the binary so that `gatehouse quickstart`
// needs no files; every example is checked by the config package's tests.
package examples

import _ "embed"

// Quickstart is quickstart.yaml: gatehouse on 127.0.0.1:8080 in front of
// the built-in demo app.
//
//go:embed quickstart.yaml
var Quickstart []byte
