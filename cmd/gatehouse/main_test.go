package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
)

// fiveMistakes has five different kinds of problem; `check` must report all
// of them at once, each at its position.
const fiveMistakes = `listeners:
  - address: 127.0.0.1:8080
    proxy_protocl: required
admin:
  token: hunter2-pasted-secret
server:
  read_header_timeout: 10
upstreams:
  app:
    targets: [ftp://127.0.0.1:3000]
routes:
  - path: /
    upstream: ap
    policy: {public: [/]}
`

func TestCheckReportsEveryMistake(t *testing.T) {
	f := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(f, []byte(fiveMistakes), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"check", "-config", f}, &out, &errOut)
	if code != 1 {
		t.Errorf("exit %d, want 1 (stderr %q)", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), out.String())
	}
	lineRE := regexp.MustCompile(`^(.+):(\d+):(\d+): ([a-z_\[\]0-9.]+): (.+)$`)
	type problem struct {
		Line, Col int
		Path      string
	}
	var got []problem
	prevLine, prevCol := 0, 0
	for _, l := range lines {
		m := lineRE.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line %q is not FILE:LINE:COL: path: message", l)
			continue
		}
		if m[1] != f {
			t.Errorf("line %q names file %q, want %q", l, m[1], f)
		}
		line, _ := strconv.Atoi(m[2])
		col, _ := strconv.Atoi(m[3])
		if line < prevLine || line == prevLine && col < prevCol {
			t.Errorf("lines are not sorted by position:\n%s", out.String())
		}
		prevLine, prevCol = line, col
		got = append(got, problem{line, col, m[4]})
	}
	want := []problem{
		{3, 5, "listeners[0].proxy_protocl"},
		{5, 10, "admin.token"},
		{7, 24, "server.read_header_timeout"},
		{10, 15, "upstreams.app.targets[0]"},
		{13, 15, "routes[0].upstream"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s\nfull output:\n%s", diff, out.String())
	}
	if strings.Contains(out.String()+errOut.String(), "hunter2") {
		t.Errorf("check echoed the literal secret:\n%s", out.String())
	}
}

func TestCheckAcceptsExamples(t *testing.T) {
	more, _ := filepath.Glob("../../examples/*/*.yaml")
	for _, f := range append([]string{"../../examples/quickstart.yaml", "../../examples/gatehouse.yaml"}, more...) {
		var out, errOut bytes.Buffer
		if code := run([]string{"check", "-config", f}, &out, &errOut); code != 0 {
			t.Errorf("check %s: exit %d, want 0\n%s%s", f, code, out.String(), errOut.String())
		}
		if want := f + ": ok\n"; out.String() != want {
			t.Errorf("check %s printed %q, want %q", f, out.String(), want)
		}
	}
}

func TestCheckUsage(t *testing.T) {
	for _, args := range [][]string{{"check"}, {"check", "-config"}, {"check", "-config", "a", "b"}, {"check", "-nope"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "-config", filepath.Join(t.TempDir(), "missing.yaml")}, &out, &errOut); code != 1 {
		t.Errorf("check of a missing file: exit %d, want 1", code)
	}
}

func TestMetabaseDeprovisionUsage(t *testing.T) {
	for _, args := range [][]string{{"metabase"}, {"metabase", "nope"}, {"metabase", "deprovision"},
		{"metabase", "deprovision", "-config", "x.yaml", "-route", "mb"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	var out, errOut bytes.Buffer
	args := []string{"metabase", "deprovision", "-config", "../../examples/gatehouse.yaml", "-route", "metabase", "-email", "a@example.test"}
	if code := run(args, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "not a metabase route in mode broker") {
		t.Errorf("a route without mode broker: exit %d, %q", code, errOut.String())
	}
}

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	s := out.String()
	if !strings.HasPrefix(s, "gatehouse "+version+" ") || !strings.Contains(s, runtime.Version()) {
		t.Errorf("version printed %q, want the version %q and %s", s, version, runtime.Version())
	}
}

func TestQuickstartRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "[::]:8080", "192.0.2.1:8080", "example.com:8080", "127.0.0.1"} {
		var out, errOut bytes.Buffer
		if code := run([]string{"quickstart", "-addr", addr}, &out, &errOut); code != 2 {
			t.Errorf("quickstart -addr %s: exit %d, want 2", addr, code)
		}
		if !strings.Contains(errOut.String(), "loopback") {
			t.Errorf("quickstart -addr %s: stderr %q does not explain the refusal", addr, errOut.String())
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if code := run(nil, &out, &errOut); code != 2 {
		t.Errorf("no arguments: exit %d, want 2", code)
	}
}

func TestHashPassword(t *testing.T) {
	var out, errOut bytes.Buffer
	code := hashPassword([]string{"-cost", "10"}, strings.NewReader("correct horse\n"), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	hash := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")); err != nil {
		t.Errorf("printed hash does not match the password: %v", err)
	}
	if strings.Contains(out.String()+errOut.String(), "correct horse") {
		t.Error("the password was echoed")
	}
}

func TestHashPasswordRefusesShortPassword(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := hashPassword(nil, strings.NewReader("short\n"), &out, &errOut); code != 1 {
		t.Fatalf("exit %d; want 1", code)
	}
	if out.Len() != 0 || strings.Contains(errOut.String(), "short\n") {
		t.Errorf("unexpected output %q / %q", out.String(), errOut.String())
	}
}
