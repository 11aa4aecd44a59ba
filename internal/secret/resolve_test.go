package secret

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestResolveEnv(t *testing.T) {
	r := NewResolver(ResolverOptions{LookupEnv: mapEnv(map[string]string{
		"SET":   testSecret,
		"EMPTY": "",
		"NL":    "abc\n", // environment values are taken verbatim
	})})
	tests := []struct {
		name    string
		ref     Ref
		want    string
		wantErr string
	}{
		{"set", Ref{"env", "SET"}, testSecret, ""},
		{"verbatim", Ref{"env", "NL"}, "abc\n", ""},
		{"missing", Ref{"env", "MISSING"}, "", "environment variable MISSING is not set"},
		{"empty", Ref{"env", "EMPTY"}, "", "environment variable EMPTY is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := r.Resolve(t.Context(), tt.ref)
			checkResolve(t, v, err, tt.want, tt.wantErr)
		})
	}
}

func TestResolveEnvDefaultsToProcessEnvironment(t *testing.T) {
	t.Setenv("GATEHOUSE_SECRET_TEST", testSecret)
	v, err := NewResolver(ResolverOptions{}).Resolve(t.Context(), Ref{"env", "GATEHOUSE_SECRET_TEST"})
	checkResolve(t, v, err, testSecret, "")
}

func checkResolve(t *testing.T, v Value, err error, want, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil {
			t.Fatalf("Resolve succeeded, want error %q", wantErr)
		}
		if err.Error() != wantErr {
			t.Errorf("Resolve error = %q, want %q", err, wantErr)
		}
		if !v.IsZero() {
			t.Error("Resolve returned a Value with an error")
		}
		return
	}
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if got := string(v.Reveal()); got != want {
		t.Errorf("Resolve = %q, want %q", got, want)
	}
}

func TestResolveFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain", testSecret)
	lf := write("lf", testSecret+"\n")
	crlf := write("crlf", testSecret+"\r\n")
	twoLF := write("two-lf", testSecret+"\n\n")
	spaces := write("spaces", " "+testSecret+" \n")
	empty := write("empty", "")
	onlyLF := write("only-lf", "\n")
	onlyCRLF := write("only-crlf", "\r\n")
	exact := write("exact", strings.Repeat("a", MaxFileSize))
	tooBig := write("too-big", strings.Repeat("a", MaxFileSize+1))
	tooBigLF := write("too-big-lf", strings.Repeat("a", MaxFileSize)+"\n")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(lf, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    string
		want    string
		wantErr string
	}{
		{"plain", plain, testSecret, ""},
		{"one LF trimmed", lf, testSecret, ""},
		{"one CRLF trimmed", crlf, testSecret, ""},
		{"only one LF trimmed", twoLF, testSecret + "\n", ""},
		{"spaces kept", spaces, " " + testSecret + " ", ""},
		{"symlink followed", link, testSecret, ""},
		{"exactly the limit", exact, strings.Repeat("a", MaxFileSize), ""},
		{"empty", empty, "", "secret file " + empty + " is empty"},
		{"only LF", onlyLF, "", "secret file " + onlyLF + " is empty"},
		{"only CRLF", onlyCRLF, "", "secret file " + onlyCRLF + " is empty"},
		{"too big", tooBig, "", "reading secret file " + tooBig + ": larger than 65536 bytes"},
		{"too big even before trimming", tooBigLF, "", "reading secret file " + tooBigLF + ": larger than 65536 bytes"},
		{"missing", missing, "", "reading secret file " + missing + ": no such file or directory"},
		{"directory", dir, "", "reading secret file " + dir + ": not a regular file"},
	}
	r := NewResolver(ResolverOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := r.Resolve(t.Context(), Ref{"file", tt.path})
			checkResolve(t, v, err, tt.want, tt.wantErr)
			if err != nil && strings.Contains(err.Error(), testSecret) {
				t.Errorf("error %q contains the file contents", err)
			}
		})
	}

	t.Run("fifo", func(t *testing.T) {
		// Opening a FIFO for reading blocks until a writer appears; supply one
		// so the test can show that Resolve rejects it by type.
		go func() {
			if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				f.Close()
			}
		}()
		_, err := r.Resolve(t.Context(), Ref{"file", fifo})
		if err == nil || err.Error() != "reading secret file "+fifo+": not a regular file" {
			t.Errorf("Resolve(fifo) error = %v", err)
		}
	})
}

func TestResolveRevalidatesHandBuiltRef(t *testing.T) {
	r := NewResolver(ResolverOptions{LookupEnv: mapEnv(map[string]string{"A-B": "x"})})
	tests := []struct {
		name    string
		ref     Ref
		wantErr string
	}{
		{"relative file", Ref{"file", "etc/passwd"}, "file: path must be absolute"},
		{"unclean file", Ref{"file", "/etc/../etc/passwd"}, `file: path must be clean (no "//", ".", ".." or trailing slash)`},
		{"bad env name", Ref{"env", "A-B"}, "env: not a valid environment variable name (want letters, digits and underscores, not starting with a digit)"},
		{"unknown scheme", Ref{"plain", "x"}, `unknown secret reference scheme "plain"`},
		{"zero", Ref{}, "empty secret reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := r.Resolve(t.Context(), tt.ref)
			checkResolve(t, v, err, "", tt.wantErr)
		})
	}
}

func TestResolveSecretManagerWithoutProvider(t *testing.T) {
	r := NewResolver(ResolverOptions{})
	for _, scheme := range []string{"vault", "aws-sm", "gcp-sm"} {
		t.Run(scheme, func(t *testing.T) {
			_, err := r.Resolve(t.Context(), Ref{scheme, "some/secret"})
			want := "secret manager scheme " + scheme + " is not available in this build yet: secret manager provider not available"
			if err == nil || err.Error() != want {
				t.Fatalf("Resolve error = %v, want %q", err, want)
			}
			if !errors.Is(err, ErrNoProvider) {
				t.Errorf("error %v does not wrap ErrNoProvider", err)
			}
		})
	}
}

type fakeProvider map[string]string

func (p fakeProvider) Fetch(_ context.Context, target string) ([]byte, error) {
	v, ok := p[target]
	if !ok {
		return nil, errors.New("not found")
	}
	return []byte(v), nil
}

func TestResolveSecretManagerProvider(t *testing.T) {
	r := NewResolver(ResolverOptions{Providers: map[string]Provider{
		"vault": fakeProvider{"kv/gatehouse": testSecret, "kv/empty": ""},
	}})
	v, err := r.Resolve(t.Context(), Ref{"vault", "kv/gatehouse"})
	checkResolve(t, v, err, testSecret, "")
	_, err = r.Resolve(t.Context(), Ref{"vault", "kv/missing"})
	if err == nil || err.Error() != "fetching vault:kv/missing: not found" {
		t.Errorf("missing secret error = %v", err)
	}
	_, err = r.Resolve(t.Context(), Ref{"vault", "kv/empty"})
	if err == nil || err.Error() != "secret vault:kv/empty is empty" {
		t.Errorf("empty secret error = %v", err)
	}
	// Other managers remain unavailable.
	if _, err := r.Resolve(t.Context(), Ref{"aws-sm", "x"}); !errors.Is(err, ErrNoProvider) {
		t.Errorf("aws-sm without provider: %v", err)
	}
}

func TestResolveCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := NewResolver(ResolverOptions{}).Resolve(ctx, Ref{"file", "/etc/hostname"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve with canceled context: %v", err)
	}
}

func TestNewResolverRejectsBadProviders(t *testing.T) {
	for _, key := range []string{"env", "file", "plain", ""} {
		t.Run(key, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NewResolver with provider for %q did not panic", key)
				}
			}()
			NewResolver(ResolverOptions{Providers: map[string]Provider{key: fakeProvider{}}})
		})
	}
	t.Run("nil provider", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("NewResolver with nil provider did not panic")
			}
		}()
		NewResolver(ResolverOptions{Providers: map[string]Provider{"vault": nil}})
	})
}

func BenchmarkResolveFile(b *testing.B) {
	p := filepath.Join(b.TempDir(), "key")
	if err := os.WriteFile(p, []byte(testSecret+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	r := NewResolver(ResolverOptions{})
	ref := Ref{"file", p}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Resolve(b.Context(), ref); err != nil {
			b.Fatal(err)
		}
	}
}
