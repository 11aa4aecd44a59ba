package idp

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/bad/*.txt")

func loadDemo(t *testing.T) *Users {
	t.Helper()
	us, err := LoadUsers(filepath.Join("testdata", "users.yaml"))
	if err != nil {
		t.Fatalf("LoadUsers: %v", err)
	}
	return us
}

func TestDemoUsersFile(t *testing.T) {
	us := loadDemo(t)
	tests := []struct {
		name, user, password string
		want                 *User
	}{
		{"alice", "alice", "wonderland", &User{Username: "alice", Email: "alice@example.test", Name: "Alice", Groups: []string{"admins", "analysts"}, Subject: SubjectFor("alice")}},
		{"bob", "bob", "builder", &User{Username: "bob", Email: "bob@example.test", Name: "Bob", Groups: []string{"staff"}, Subject: SubjectFor("bob")}},
		{"username is ASCII case-insensitive", "ALIce", "wonderland", &User{Username: "alice", Email: "alice@example.test", Name: "Alice", Groups: []string{"admins", "analysts"}, Subject: SubjectFor("alice")}},
		{"wrong password", "alice", "builder", nil},
		{"unknown user", "mallory", "wonderland", nil},
		{"empty password", "bob", "", nil},
		{"Kelvin sign is not k", "\u212Aelly", "x", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := us.Check(tt.user, tt.password)
			if tt.want == nil {
				if !errors.Is(err, ErrInvalidCredentials) || got != nil {
					t.Fatalf("Check = %v, %v; want nil, ErrInvalidCredentials", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
		})
	}
	if us.Len() != 2 {
		t.Errorf("Len = %d, want 2", us.Len())
	}
}

func TestSubjectIsStableAndOpaque(t *testing.T) {
	s := SubjectFor("alice")
	if len(s) != 22 || strings.Contains(s, "alice") {
		t.Errorf("SubjectFor(alice) = %q; want 22 opaque characters", s)
	}
	if s != SubjectFor("alice") || s == SubjectFor("bob") {
		t.Error("SubjectFor is not a stable per-username value")
	}
	// Changing the email keeps the subject.
	const tmpl = "users:\n  - username: alice\n    password_hash: \"$2a$10$RNEg/PY2rHcMR90j1f0IDuPfroj./yZ1QiIO7PSc1HUFvzeSqJVZ2\"\n    email: %s\n"
	a, err := ParseUsers("a.yaml", []byte(strings.Replace(tmpl, "%s", "alice@example.test", 1)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseUsers("b.yaml", []byte(strings.Replace(tmpl, "%s", "liddell@example.test", 1)))
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := a.Lookup("alice")
	ub, _ := b.Lookup("alice")
	if ua.Subject != ub.Subject || ua.Subject != s {
		t.Errorf("subjects %q, %q; want both %q", ua.Subject, ub.Subject, s)
	}
}

// TestUnknownUserTakesBcryptTime proves that Check runs one bcrypt
// comparison for an unknown user too, against a dummy hash of the file's
// cost, so the response time does not reveal which users exist.
func TestUnknownUserTakesBcryptTime(t *testing.T) {
	us := loadDemo(t)
	var calls int
	var lastHash []byte
	us.compare = func(hash, password []byte) error {
		calls++
		lastHash = hash
		return bcrypt.CompareHashAndPassword(hash, password)
	}
	for _, user := range []string{"mallory", "", strings.Repeat("x", 1000)} {
		calls = 0
		if _, err := us.Check(user, "wonderland"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("Check(%q) error = %v, want ErrInvalidCredentials", user, err)
		}
		if calls != 1 {
			t.Errorf("Check(%q) ran %d bcrypt comparisons, want 1", user, calls)
		}
		if cost, err := bcrypt.Cost(lastHash); err != nil || cost != 10 {
			t.Errorf("dummy hash cost = %d, %v; want 10 like the file's hashes", cost, err)
		}
	}
	calls = 0
	if _, err := us.Check("alice", "not-wonderland"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if calls != 1 {
		t.Errorf("wrong password ran %d comparisons, want 1", calls)
	}
}

func TestCheckRejectsBytesBeyondBcryptLimit(t *testing.T) {
	pw := strings.Repeat("p", MaxPasswordLen)
	h, err := HashPassword(pw, MinCost)
	if err != nil {
		t.Fatal(err)
	}
	us, err := ParseUsers("u.yaml", []byte("users:\n  - username: long\n    password_hash: \""+h+"\"\n    email: long@example.test\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := us.Check("long", pw); err != nil {
		t.Fatalf("exact password: %v", err)
	}
	if _, err := us.Check("long", pw+"anything"); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("password with extra bytes: err = %v, want ErrInvalidCredentials", err)
	}
}

func TestHashPassword(t *testing.T) {
	tests := []struct {
		name     string
		password string
		cost     int
		wantErr  string
	}{
		{"too short", "1234567", 10, "password is shorter than 8 bytes"},
		{"empty", "", 10, "password is shorter than 8 bytes"},
		{"too long", strings.Repeat("a", 73), 10, "password is longer than 72 bytes (bcrypt's limit)"},
		{"cost too low", "longenough", 4, "bcrypt cost 4 is out of range [10, 15]"},
		{"cost too high", "longenough", 16, "bcrypt cost 16 is out of range [10, 15]"},
		{"ok", "longenough", 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := HashPassword(tt.password, tt.cost)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("HashPassword error = %v, want %q", err, tt.wantErr)
				}
				if tt.password != "" && strings.Contains(err.Error(), tt.password) {
					t.Errorf("error echoes the password")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if bcrypt.CompareHashAndPassword([]byte(h), []byte(tt.password)) != nil {
				t.Error("hash does not match its password")
			}
			if c, _ := bcrypt.Cost([]byte(h)); c != tt.cost {
				t.Errorf("cost = %d, want %d", c, tt.cost)
			}
		})
	}
	if _, err := HashPassword("short", 10); !errors.Is(err, ErrPasswordTooShort) {
		t.Errorf("want ErrPasswordTooShort, got %v", err)
	}
}

func TestPlaintextPasswordRejectedWithoutEcho(t *testing.T) {
	tests := []struct {
		name, value, wantMsg string
	}{
		{"quoted plaintext", `"hunter2hunter2"`, "literal passwords are not allowed"},
		{"unquoted number", `12345678901`, "literal passwords are not allowed"},
		{"phrase", `correct horse battery staple`, "literal passwords are not allowed"},
		{"other scheme", `"$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"`, "only bcrypt is supported"},
		{"dollar plaintext", `"$ecretPassw0rd"`, "only bcrypt is supported"},
		{"truncated bcrypt", `"$2a$10$RNEg/PY2rHcMR90j1f0IDuPf"`, "malformed bcrypt hash"},
		{"low cost", `"$2a$04$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"`, "bcrypt cost 4 is out of range"},
		{"a list", `[hunter2hunter2]`, "want a bcrypt hash, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "users:\n  - username: alice\n    password_hash: " + tt.value + "\n    email: alice@example.test\n"
			_, err := ParseUsers("users.yaml", []byte(data))
			if err == nil {
				t.Fatal("ParseUsers accepted the file")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantMsg) || !strings.Contains(msg, "users[0].password_hash") {
				t.Errorf("error %q does not contain %q", msg, tt.wantMsg)
			}
			if tt.wantMsg == "literal passwords are not allowed" && !strings.Contains(msg, "gatehouse hash-password") {
				t.Errorf("error %q does not point to gatehouse hash-password", msg)
			}
			secret := strings.Trim(tt.value, `"[]`)
			for _, part := range []string{secret, secret[:8], secret[len(secret)-8:]} {
				if strings.Contains(msg, part) {
					t.Errorf("error %q echoes %q from the password_hash value", msg, part)
				}
			}
		})
	}
}

// TestBadUsersFiles checks the exact messages for broken users files in
// testdata/bad: each file is a description, "-- users.yaml --", the file,
// "-- want --" and the expected error text. Run with -update to rewrite
// the want sections (then review the diff).
func TestBadUsersFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			head, rest, ok1 := strings.Cut(string(raw), "-- users.yaml --\n")
			input, want, ok2 := strings.Cut(rest, "-- want --\n")
			if !ok1 || !ok2 {
				t.Fatalf("%s: want sections '-- users.yaml --' and '-- want --'", file)
			}
			_, err = ParseUsers("users.yaml", []byte(input))
			if err == nil {
				t.Fatal("ParseUsers accepted the file")
			}
			got := err.Error() + "\n"
			if *update {
				out := head + "-- users.yaml --\n" + input + "-- want --\n" + got
				if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseUsers(f *testing.F) {
	demo, err := os.ReadFile(filepath.Join("testdata", "users.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(demo))
	files, _ := filepath.Glob(filepath.Join("testdata", "bad", "*.txt"))
	for _, file := range files {
		raw, _ := os.ReadFile(file)
		_, rest, _ := strings.Cut(string(raw), "-- users.yaml --\n")
		input, _, _ := strings.Cut(rest, "-- want --\n")
		f.Add(input)
	}
	f.Add("users:\n  - username: a\n    password_hash: Sup3rSecret$Value\n    email: a@b.c\n")
	f.Fuzz(func(t *testing.T, data string) {
		us, err := ParseUsers("users.yaml", []byte(data))
		if err == nil {
			if us.Len() == 0 {
				t.Fatal("no error and no users")
			}
			return
		}
		msg := err.Error()
		for _, v := range passwordHashValues(data) {
			if len(v) > 8 && strings.Contains(msg, v) {
				t.Fatalf("error echoes password_hash value %q:\n%s", v, msg)
			}
		}
	})
}

// messageAlphabet holds every byte the fixed text of ParseUsers' messages
// (paths, file name, numbers, wording) can contain.
const messageAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789 :.,;()[]'`_-YAML\n"

// passwordHashValues returns the scalar password_hash values in a users
// file that an error message could only contain by echoing them: values
// with a byte outside messageAlphabet (so the fixed wording cannot spell
// them) that no other scalar, raw or quoted, contains (those are echoed
// legitimately, as usernames, emails, groups or unknown keys).
func passwordHashValues(data string) []string {
	var doc yaml.Node
	if yaml.Unmarshal([]byte(data), &doc) != nil {
		return nil
	}
	var hashes, others []string
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		if n.Kind == yaml.ScalarNode {
			others = append(others, n.Value, strconv.Quote(n.Value))
		}
		for i, c := range n.Content {
			if n.Kind == yaml.MappingNode && i%2 == 1 && n.Content[i-1].Value == "password_hash" && c.Kind == yaml.ScalarNode {
				hashes = append(hashes, c.Value)
				seen[c] = true
				continue
			}
			walk(c)
		}
		walk(n.Alias)
	}
	walk(&doc)
	var out []string
outer:
	for _, v := range hashes {
		if strings.Trim(v, messageAlphabet) == "" {
			continue
		}
		for _, o := range others {
			if strings.Contains(o, v) {
				continue outer
			}
		}
		out = append(out, v)
	}
	return out
}
