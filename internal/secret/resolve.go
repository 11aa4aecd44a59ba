package secret

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
)

// MaxFileSize is the largest secret file, in bytes, that [Resolver.Resolve]
// reads. A larger file is an error, not a truncated secret.
const MaxFileSize = 64 << 10

// Provider fetches secrets for one secret manager scheme. Fetch receives the
// reference's target (the part after "scheme:") and returns the raw secret.
// Errors must not include the secret; they may name the target.
type Provider interface {
	Fetch(ctx context.Context, target string) ([]byte, error)
}

// ResolverOptions configures a [Resolver].
type ResolverOptions struct {
	// LookupEnv looks up environment variables for env: references. The
	// default is os.LookupEnv; tests inject a map.
	LookupEnv func(string) (string, bool)

	// Providers maps a secret manager scheme ("vault", "aws-sm", "gcp-sm") to
	// the Provider that resolves it. A secret manager becomes available by
	// adding one entry here. Keys must be secret manager schemes: env and file
	// are built in, and NewResolver panics on any other key, since ParseRef
	// could never produce a reference that reaches it.
	Providers map[string]Provider
}

// Resolver turns a [Ref] into a [Value]. It is safe for concurrent use.
type Resolver struct {
	lookupEnv func(string) (string, bool)
	providers map[string]Provider // read-only after NewResolver
}

// NewResolver returns a Resolver. It panics if opts.Providers has a key that is
// not a secret manager scheme, which is a programming error.
func NewResolver(opts ResolverOptions) *Resolver {
	r := &Resolver{
		lookupEnv: opts.LookupEnv,
		providers: maps.Clone(opts.Providers),
	}
	if r.lookupEnv == nil {
		r.lookupEnv = os.LookupEnv
	}
	for scheme, p := range r.providers {
		if schemes[scheme] != kindManager {
			panic(fmt.Sprintf("secret: ResolverOptions.Providers key %q is not a secret manager scheme", scheme))
		}
		if p == nil {
			panic(fmt.Sprintf("secret: ResolverOptions.Providers[%q] is nil", scheme))
		}
	}
	return r
}

// Resolve fetches the secret ref refers to. The reference is validated again,
// so a hand-built Ref gets the same checks as one from [ParseRef].
//
//   - env: an unset variable is an error ("environment variable NAME is not
//     set"), and so is an empty one.
//   - file: the file must be a regular file of at most [MaxFileSize] bytes;
//     exactly one trailing "\n" or "\r\n" is removed, and an empty result is
//     an error. Errors name the path, never the contents.
//   - secret manager schemes: the registered [Provider] fetches the secret; an
//     empty secret is an error. Without a Provider the error wraps
//     [ErrNoProvider].
func (r *Resolver) Resolve(ctx context.Context, ref Ref) (Value, error) {
	if ref.IsZero() {
		return Value{}, ErrEmpty
	}
	if err := ref.validate(); err != nil {
		return Value{}, err
	}
	if err := ctx.Err(); err != nil {
		return Value{}, fmt.Errorf("resolving %s: %w", ref, err)
	}
	switch schemes[ref.Scheme] {
	case kindEnv:
		return r.resolveEnv(ref.Target)
	case kindFile:
		return resolveFile(ref.Target)
	default:
		p, ok := r.providers[ref.Scheme]
		if !ok {
			return Value{}, fmt.Errorf("secret manager scheme %s is not available in this build yet: %w", ref.Scheme, ErrNoProvider)
		}
		b, err := p.Fetch(ctx, ref.Target)
		if err != nil {
			return Value{}, fmt.Errorf("fetching %s: %w", ref, err)
		}
		if len(b) == 0 {
			return Value{}, fmt.Errorf("secret %s is empty", ref)
		}
		return NewValue(b), nil
	}
}

func (r *Resolver) resolveEnv(name string) (Value, error) {
	s, ok := r.lookupEnv(name)
	if !ok {
		return Value{}, fmt.Errorf("environment variable %s is not set", name)
	}
	if s == "" {
		return Value{}, fmt.Errorf("environment variable %s is empty", name)
	}
	return NewValue([]byte(s)), nil
}

func resolveFile(path string) (Value, error) {
	f, err := os.Open(path)
	if err != nil {
		return Value{}, fmt.Errorf("reading secret file %s: %w", path, pathErrCause(err))
	}
	defer f.Close()
	// Check the type before reading: a FIFO or a device could block or never
	// end. Kubernetes mounts secrets as symlinks to regular files, which Open
	// follows.
	fi, err := f.Stat()
	if err != nil {
		return Value{}, fmt.Errorf("reading secret file %s: %w", path, pathErrCause(err))
	}
	if !fi.Mode().IsRegular() {
		return Value{}, fmt.Errorf("reading secret file %s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Value{}, fmt.Errorf("reading secret file %s: %w", path, pathErrCause(err))
	}
	if len(b) > MaxFileSize {
		clear(b)
		return Value{}, fmt.Errorf("reading secret file %s: larger than %d bytes", path, MaxFileSize)
	}
	trimmed := trimNewline(b)
	if len(trimmed) == 0 {
		return Value{}, fmt.Errorf("secret file %s is empty", path)
	}
	v := NewValue(trimmed)
	clear(b)
	return v, nil
}

// trimNewline removes exactly one trailing "\n" or "\r\n".
func trimNewline(b []byte) []byte {
	if b, ok := bytes.CutSuffix(b, []byte("\r\n")); ok {
		return b
	}
	b, _ = bytes.CutSuffix(b, []byte("\n"))
	return b
}

// pathErrCause strips the *fs.PathError wrapper, whose message repeats the
// path the caller already names.
func pathErrCause(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}
