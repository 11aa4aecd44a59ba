package idp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/gatehouse-proxy/gatehouse/internal/fileerr"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
)

const (
	// MinCost is the lowest bcrypt cost a users file may use.
	MinCost = 10
	// MaxCost is the highest bcrypt cost a users file may use. Each login
	// runs one comparison, so cost 15 (about 2 s) is already a stretch, and
	// a higher one would let a single request hold a CPU for minutes.
	MaxCost = 15
	// DefaultCost is the cost `gatehouse hash-password` should use when the
	// operator does not choose one.
	DefaultCost = 12

	// MinPasswordLen is the shortest password HashPassword accepts, in bytes.
	MinPasswordLen = 8
	// MaxPasswordLen is the longest password HashPassword accepts, in
	// bytes: bcrypt ignores everything after the 72nd byte.
	MaxPasswordLen = 72

	// maxFileSize bounds the users file; a larger file is certainly a mistake.
	maxFileSize = 4 << 20
)

var (
	// ErrInvalidCredentials is the one error Check returns for an unknown
	// user and for a wrong password alike, so callers cannot tell them apart
	// (and so cannot leak which users exist).
	ErrInvalidCredentials = errors.New("invalid username or password")
	// ErrPasswordTooShort is returned by HashPassword for a password shorter
	// than MinPasswordLen bytes.
	ErrPasswordTooShort = fmt.Errorf("password is shorter than %d bytes", MinPasswordLen)
	// ErrPasswordTooLong is returned by HashPassword for a password longer
	// than MaxPasswordLen bytes, bcrypt's limit.
	ErrPasswordTooLong = fmt.Errorf("password is longer than %d bytes (bcrypt's limit)", MaxPasswordLen)
)

// User is one account of the built-in provider, as its claims are issued.
// It never holds the password hash.
type User struct {
	// Username is the login name: lower case, 1 to 64 of [a-z0-9._-],
	// starting with a letter or digit.
	Username string
	// Email is the user's address, unique in the file.
	Email string
	// Name is the display name (optional).
	Name string
	// Groups are the user's group names (optional), without commas.
	Groups []string
	// Subject is the stable, opaque `sub` claim: the first 22 characters of
	// base64url(SHA-256("gatehouse-user:" + Username)). It depends on the
	// username only, so changing an email or name keeps it; renaming a
	// user makes them a new subject.
	Subject string
}

// SubjectFor returns the Subject of the user with the given username.
func SubjectFor(username string) string {
	sum := sha256.Sum256([]byte("gatehouse-user:" + username))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:22]
}

type account struct {
	user User
	hash []byte
}

// Users is the built-in provider's user store, loaded from a users file. It
// is immutable and safe for concurrent use; a reload builds a new one.
type Users struct {
	byName map[string]*account
	list   []User
	dummy  []byte // a bcrypt hash of a random password, at the highest cost in the file

	// compare is bcrypt.CompareHashAndPassword; tests replace it to count calls.
	compare func(hash, password []byte) error
}

// Len returns the number of users.
func (us *Users) Len() int { return len(us.list) }

// All returns a copy of every user, in file order.
func (us *Users) All() []User {
	out := make([]User, len(us.list))
	for i, u := range us.list {
		u.Groups = append([]string(nil), u.Groups...)
		out[i] = u
	}
	return out
}

// Lookup returns the user with the given username (ASCII case-insensitive),
// for building claims from an existing session. It does not authenticate.
func (us *Users) Lookup(username string) (*User, bool) {
	a, ok := us.byName[foldUsername(username)]
	if !ok {
		return nil, false
	}
	u := a.user
	u.Groups = append([]string(nil), u.Groups...)
	return &u, true
}

// Check authenticates username and password. The username is matched
// ASCII case-insensitively. It returns ErrInvalidCredentials for an unknown
// user and for a wrong password alike, and for an unknown user still runs
// one bcrypt comparison against a dummy hash, so the response time does not
// reveal which users exist. (That hides existence fully only when every
// hash in the file has the same cost: the dummy uses the highest one.)
//
// Check does not rate-limit; call Limiter.Allow first.
func (us *Users) Check(username, password string) (*User, error) {
	a, ok := us.byName[foldUsername(username)]
	hash := us.dummy
	if ok {
		hash = a.hash
	}
	err := us.compare(hash, []byte(password))
	// bcrypt silently ignores bytes after the 72nd; HashPassword never
	// hashes such a password, so a longer one cannot be right.
	if !ok || err != nil || len(password) > MaxPasswordLen {
		return nil, ErrInvalidCredentials
	}
	u := a.user
	u.Groups = append([]string(nil), u.Groups...)
	return &u, nil
}

// foldUsername lower-cases ASCII letters only. Full Unicode folding would
// map, for instance, the Kelvin sign to "k" and give one account many
// spellings; every valid username is ASCII, so nothing else can match.
func foldUsername(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// HashPassword returns the bcrypt hash of password at cost, for the
// `gatehouse hash-password` command. It refuses passwords shorter than
// MinPasswordLen or longer than MaxPasswordLen bytes, and costs outside
// [MinCost, MaxCost].
func HashPassword(password string, cost int) (string, error) {
	switch {
	case len(password) < MinPasswordLen:
		return "", ErrPasswordTooShort
	case len(password) > MaxPasswordLen:
		return "", ErrPasswordTooLong
	case cost < MinCost || cost > MaxCost:
		return "", fmt.Errorf("bcrypt cost %d is out of range [%d, %d]", cost, MinCost, MaxCost)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}

var (
	dummyMu     sync.Mutex
	dummyByCost = map[int][]byte{} // guarded by dummyMu
)

// dummyHash returns a hash of a random password at cost, made once per cost
// per process.
func dummyHash(cost int) ([]byte, error) {
	dummyMu.Lock()
	defer dummyMu.Unlock()
	if h, ok := dummyByCost[cost]; ok {
		return h, nil
	}
	h, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return nil, fmt.Errorf("making dummy hash: %w", err)
	}
	dummyByCost[cost] = h
	return h, nil
}

// LoadUsers reads and validates the users file at path. A returned error is
// an Errors listing every problem found, or a plain error when the file
// cannot be read.
func LoadUsers(path string) (*Users, error) {
	data, err := fileerr.ReadFile(path, maxFileSize)
	if err != nil {
		return nil, err
	}
	return ParseUsers(path, data)
}

// ParseUsers decodes and validates a users file, naming it name in error
// messages. A returned error is an Errors listing every problem, sorted.
// No message ever contains a password_hash value.
func ParseUsers(name string, data []byte) (*Users, error) {
	root, errs := fileerr.YAMLDocument(name, data, maxFileSize)
	if errs != nil {
		return nil, errs
	}
	p := &parser{file: name}
	entries := p.parse(root)
	if len(p.errs) > 0 {
		p.errs.Sort()
		return nil, p.errs
	}
	us := &Users{byName: make(map[string]*account, len(entries)), compare: bcrypt.CompareHashAndPassword}
	maxCost := MinCost
	for _, a := range entries {
		us.byName[a.user.Username] = a
		us.list = append(us.list, a.user)
		if c, _ := bcrypt.Cost(a.hash); c > maxCost {
			maxCost = c
		}
	}
	var err error
	if us.dummy, err = dummyHash(maxCost); err != nil {
		return nil, err
	}
	return us, nil
}

var (
	usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	// bcryptRE is the modular-crypt form bcrypt produces: version, two-digit
	// cost, 22 characters of salt and 31 of hash in bcrypt's base64 alphabet.
	bcryptRE = regexp.MustCompile(`^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)
)

type parser struct {
	file string
	errs Errors
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// kindName describes a node for "want X, got Y" messages. It names the kind
// only and never includes the value, which might be a password.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return "a string"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		}
		return "a " + strings.TrimPrefix(n.ShortTag(), "!!")
	}
	return "nothing"
}

// fields checks that n is a mapping whose keys are all in known and unique,
// and returns the value node of each key present.
func (p *parser) fields(n *yaml.Node, path string, known ...string) (map[string]*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "want a mapping, got %s", kindName(n))
		return nil, false
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := k.Value
		if path != "" {
			kp = path + "." + k.Value
		}
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, path, "keys must be names, got %s", kindName(k))
			continue
		}
		if !contains(known, k.Value) {
			p.errorf(k, kp, "unknown field (want %s)", strings.Join(known, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.errorf(k, kp, "duplicate key")
			continue
		}
		if v.Kind == yaml.AliasNode {
			p.errorf(v, kp, "YAML aliases are not allowed in a users file")
			continue
		}
		out[k.Value] = v
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// str returns the value of a string scalar, reporting anything else.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, path, "want a string, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) parse(root *yaml.Node) []*account {
	top, ok := p.fields(root, "", "users")
	if !ok {
		return nil
	}
	list := top["users"]
	if list == nil {
		p.errorf(root, "users", "required")
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		p.errorf(list, "users", "want a list, got %s", kindName(list))
		return nil
	}
	if len(list.Content) == 0 {
		p.errorf(list, "users", "at least one user is required")
		return nil
	}
	var out []*account
	names := map[string]string{}  // folded username → path of its first use
	emails := map[string]string{} // lower-cased email → path of its first use
	for i, n := range list.Content {
		path := fmt.Sprintf("users[%d]", i)
		if n.Kind == yaml.AliasNode {
			p.errorf(n, path, "YAML aliases are not allowed in a users file")
			continue
		}
		f, ok := p.fields(n, path, "username", "password_hash", "email", "name", "groups")
		if !ok {
			continue
		}
		a, valid := &account{}, true
		for _, req := range []string{"username", "password_hash", "email"} {
			if f[req] == nil {
				p.errorf(n, path+"."+req, "required")
				valid = false
			}
		}
		if v := f["username"]; v != nil {
			fp := path + ".username"
			if s, ok := p.str(v, fp); !ok {
				valid = false
			} else {
				if !usernameRE.MatchString(s) {
					p.errorf(v, fp, "invalid username %q: want 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", s)
					valid = false
				}
				key := strings.ToLower(s)
				if first, dup := names[key]; dup {
					p.errorf(v, fp, "duplicate username %q (case-insensitive; first used at %s)", s, first)
					valid = false
				} else {
					names[key] = fp
				}
				a.user.Username = s
				a.user.Subject = SubjectFor(s)
			}
		}
		if v := f["password_hash"]; v != nil {
			h, ok := p.hash(v, path+".password_hash")
			valid = valid && ok
			a.hash = h
		}
		if v := f["email"]; v != nil {
			fp := path + ".email"
			if s, ok := p.str(v, fp); !ok {
				valid = false
			} else {
				if addr, err := mail.ParseAddress(s); err != nil || addr.Address != s || addr.Name != "" {
					p.errorf(v, fp, "invalid email address %q: want a bare address like user@example.com", s)
					valid = false
				}
				key := strings.ToLower(s)
				if first, dup := emails[key]; dup {
					p.errorf(v, fp, "duplicate email %q (first used at %s)", s, first)
					valid = false
				} else {
					emails[key] = fp
				}
				a.user.Email = s
			}
		}
		if v := f["name"]; v != nil {
			if s, ok := p.str(v, path+".name"); ok {
				a.user.Name = s
			} else {
				valid = false
			}
		}
		if v := f["groups"]; v != nil {
			gs, ok := p.groups(v, path+".groups")
			valid = valid && ok
			a.user.Groups = gs
		}
		if valid {
			out = append(out, a)
		}
	}
	return out
}

func (p *parser) groups(n *yaml.Node, path string) ([]string, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "want a list, got %s", kindName(n))
		return nil, false
	}
	var out []string
	ok := true
	for j, g := range n.Content {
		gp := fmt.Sprintf("%s[%d]", path, j)
		s, isStr := p.str(g, gp)
		switch {
		case !isStr:
			ok = false
		case strings.TrimSpace(s) == "":
			p.errorf(g, gp, "group names must be non-empty")
			ok = false
		case strings.Contains(s, ","):
			p.errorf(g, gp, "group name %q contains a comma (groups are sent joined by commas)", s)
			ok = false
		default:
			out = append(out, s)
		}
	}
	return out, ok
}

// hash validates a password_hash value. Its messages never include the
// value: a mistaken value is often the plaintext password itself.
func (p *parser) hash(n *yaml.Node, path string) ([]byte, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "want a bcrypt hash, got %s", kindName(n))
		return nil, false
	}
	// Any scalar is taken as text: an unquoted numeric password must still
	// get the "use hash-password" advice rather than a type error.
	s := n.Value
	switch {
	case s == "":
		p.errorf(n, path, "required")
		return nil, false
	case !strings.HasPrefix(s, "$"):
		p.errorf(n, path, "not a password hash; literal passwords are not allowed: generate a bcrypt hash with `gatehouse hash-password`")
		return nil, false
	case !strings.HasPrefix(s, "$2"):
		p.errorf(n, path, "unsupported hash scheme; only bcrypt is supported: generate a hash with `gatehouse hash-password`")
		return nil, false
	case !bcryptRE.MatchString(s):
		p.errorf(n, path, "malformed bcrypt hash (want 60 characters like those `gatehouse hash-password` prints)")
		return nil, false
	}
	cost, _ := strconv.Atoi(s[4:6]) // two digits, checked by bcryptRE
	if cost < MinCost || cost > MaxCost {
		p.errorf(n, path, "bcrypt cost %d is out of range [%d, %d]: generate a new hash with `gatehouse hash-password`", cost, MinCost, MaxCost)
		return nil, false
	}
	if _, err := bcrypt.Cost([]byte(s)); err != nil {
		p.errorf(n, path, "malformed bcrypt hash (want 60 characters like those `gatehouse hash-password` prints)")
		return nil, false
	}
	return []byte(s), true
}
