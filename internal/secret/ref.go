// Package secret handles secrets by reference only.
//
// Configuration never holds a secret itself. It holds a [Ref] such as
// "env:OIDC_CLIENT_SECRET" or "file:/run/secrets/session-key", which a
// [Resolver] turns into a [Value] at start-up or reload. A Value prints as
// [redacted] through every formatting path the standard library offers (fmt,
// encoding/json, encoding.TextMarshaler, log/slog), so a secret cannot reach a
// log by accident; only [Value.Reveal] returns the bytes.
//
// Error messages are written so that they cannot leak a secret either. A value
// that has no recognized scheme is most likely a real secret that a user pasted
// into the configuration, so [ParseRef] never repeats it: it returns an error
// wrapping [ErrLiteral] with a fixed message. Other parse errors name the scheme
// and the problem but never the value. Resolution errors name the reference
// (an environment variable name or a file path, which are not secret) but never
// the contents.
package secret

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// ErrLiteral is wrapped by the error [ParseRef] returns for a value that has no
// recognized scheme and is therefore treated as a literal secret. The error
// message is fixed and never includes the value.
var ErrLiteral = errors.New("literal secrets are not allowed; use env:NAME, file:/abs/path or a secret manager reference")

// ErrEmpty is returned by [ParseRef] for the empty string. Callers that treat a
// secret as optional check for it with errors.Is.
var ErrEmpty = errors.New("empty secret reference")

// ErrNoProvider is wrapped by the error [Resolver.Resolve] returns for a secret
// manager scheme (vault:, aws-sm:, gcp-sm:) that has no [Provider] in this build.
var ErrNoProvider = errors.New("secret manager provider not available")

// Scheme names recognized by [ParseRef].
const (
	// SchemeEnv names an environment variable: "env:NAME".
	SchemeEnv = "env"
	// SchemeFile names a file by absolute, cleaned path: "file:/abs/path".
	SchemeFile = "file"
	// SchemeVault names a HashiCorp Vault secret: "vault:<path>".
	SchemeVault = "vault"
	// SchemeAWSSecretsManager names an AWS Secrets Manager secret: "aws-sm:<id>".
	SchemeAWSSecretsManager = "aws-sm"
	// SchemeGCPSecretManager names a Google Cloud Secret Manager secret: "gcp-sm:<name>".
	SchemeGCPSecretManager = "gcp-sm"
)

// schemeKind says how a scheme's target is validated and resolved.
type schemeKind int

const (
	kindEnv schemeKind = iota + 1
	kindFile
	// kindManager is a secret manager scheme: resolved by a Provider registered
	// in ResolverOptions.Providers. Adding a secret manager means adding one
	// entry here (if the scheme is new) and one Provider at start-up.
	kindManager
)

// schemes is the table of recognized schemes. It is never modified.
var schemes = map[string]schemeKind{
	SchemeEnv:               kindEnv,
	SchemeFile:              kindFile,
	SchemeVault:             kindManager,
	SchemeAWSSecretsManager: kindManager,
	SchemeGCPSecretManager:  kindManager,
}

// Ref is a parsed secret reference such as "env:NAME" or "file:/abs/path". The
// reference itself is not secret and may be logged. The zero Ref means "no
// secret configured".
type Ref struct {
	// Scheme is one of the Scheme constants, such as "env" or "file".
	Scheme string
	// Target is the part after the first colon: an environment variable name,
	// an absolute path, or a secret manager's identifier.
	Target string
}

// ParseRef parses a secret reference. The accepted forms are:
//
//   - env:NAME, where NAME is a valid environment variable name
//     ([A-Za-z_][A-Za-z0-9_]*);
//   - file:/abs/path, where the path is absolute and already clean (no "//",
//     ".", ".." or trailing slash);
//   - vault:TARGET, aws-sm:TARGET and gcp-sm:TARGET, with a non-empty target.
//
// Scheme names are case-sensitive. No target may contain control characters.
// Anything without a recognized scheme is a literal secret: the error wraps
// [ErrLiteral] and its message is exactly ErrLiteral's, so a pasted secret is
// never echoed. Other errors name the scheme but never the value. The empty
// string returns [ErrEmpty].
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, ErrEmpty
	}
	scheme, target, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, ErrLiteral
	}
	if _, known := schemes[scheme]; !known {
		return Ref{}, ErrLiteral
	}
	r := Ref{Scheme: scheme, Target: target}
	if err := r.validate(); err != nil {
		return Ref{}, err
	}
	return r, nil
}

// validate checks the target against the scheme's rules. Its errors name the
// scheme and the rule, never the target, which might be a secret that happens
// to start with "env:".
func (r Ref) validate() error {
	kind, ok := schemes[r.Scheme]
	if !ok {
		// Only reachable with a hand-built Ref; the scheme is not secret.
		return fmt.Errorf("unknown secret reference scheme %q", r.Scheme)
	}
	if r.Target == "" {
		return fmt.Errorf("%s: secret reference has an empty target", r.Scheme)
	}
	if hasControl(r.Target) {
		return fmt.Errorf("%s: secret reference target contains control characters", r.Scheme)
	}
	switch kind {
	case kindEnv:
		if !validEnvName(r.Target) {
			return fmt.Errorf("%s: not a valid environment variable name (want letters, digits and underscores, not starting with a digit)", r.Scheme)
		}
	case kindFile:
		if !filepath.IsAbs(r.Target) {
			return fmt.Errorf("%s: path must be absolute", r.Scheme)
		}
		if filepath.Clean(r.Target) != r.Target {
			return fmt.Errorf("%s: path must be clean (no \"//\", \".\", \"..\" or trailing slash)", r.Scheme)
		}
	}
	return nil
}

// String returns the reference in its parseable form, "scheme:target". The
// zero Ref returns the empty string.
func (r Ref) String() string {
	if r.IsZero() {
		return ""
	}
	return r.Scheme + ":" + r.Target
}

// IsZero reports whether r is the zero Ref, meaning no secret is configured.
func (r Ref) IsZero() bool {
	return r.Scheme == "" && r.Target == ""
}

// validEnvName reports whether s is a POSIX portable environment variable name.
func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// hasControl reports whether s contains an ASCII control character or DEL.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
