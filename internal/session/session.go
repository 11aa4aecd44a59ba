package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// ID identifies one session: 256 bits from crypto/rand, fresh at every login
// (ASVS v5 7.2.3, 7.2.4). With a server-side store the ID is the credential,
// so it never prints: String, every fmt verb and slog show [ID.Ref] instead.
type ID [32]byte

// NewID returns a fresh random session ID. crypto/rand does not fail on
// supported platforms; if the kernel's generator ever did, the program
// crashes rather than return a guessable ID.
func NewID() ID {
	var id ID
	rand.Read(id[:])
	return id
}

// IsZero reports whether id is the zero ID, which no session has.
func (id ID) IsZero() bool {
	return id == ID{}
}

// Ref returns a stable reference to id for logs and audit records: the first
// 8 bytes of its SHA-256 hash, in hex. It identifies the session without
// disclosing it.
func (id ID) Ref() string {
	h := sha256.Sum256(id[:])
	return hex.EncodeToString(h[:8])
}

// String returns [ID.Ref].
func (id ID) String() string { return id.Ref() }

// Format writes [ID.Ref] for every verb, so %x or %#v cannot print the raw ID.
func (id ID) Format(f fmt.State, _ rune) { fmt.Fprint(f, id.Ref()) }

// LogValue makes slog record [ID.Ref].
func (id ID) LogValue() slog.Value { return slog.StringValue(id.Ref()) }

// Session is what gatehouse remembers about a signed-in user. It travels
// sealed in a cookie, so keep it small: with the cookie store the whole
// encoding must fit [MaxCookieValue] after sealing.
//
// Times are stored to the second (truncated) and read back in UTC.
//
// A Session holds the refresh token and ID token, so it never prints them:
// every fmt verb and slog show only the ID reference, issuer, subject,
// provider and times. Marshalling it to JSON would disclose them; don't.
type Session struct {
	// ID is fresh at every login, re-authentication and refresh-driven
	// change of privilege (copy the session, give it a NewID, save it and
	// revoke the old one).
	ID ID

	// Issuer and Subject identify the user (OIDC Core §5.7: sub is unique
	// only within its issuer). Both are required.
	Issuer  string
	Subject string
	// Provider is the configured name of the identity provider that signed
	// the user in.
	Provider string
	// Email and Name are display claims from the ID token or UserInfo.
	Email string
	Name  string
	// Groups are the user's groups, as the provider sent them.
	Groups []string
	// SID is the provider's session ID (the ID token's sid claim), which a
	// back-channel logout token may name instead of the subject. Optional.
	SID string

	// CreatedAt is when the user signed in. Required.
	CreatedAt time.Time
	// LastSeen is when gatehouse last re-issued the session; the idle
	// timeout counts from it. Zero means CreatedAt.
	LastSeen time.Time
	// AbsoluteExpiry ends the session however active it is. The store caps
	// it at CreatedAt plus its absolute lifetime; zero means that cap.
	AbsoluteExpiry time.Time
	// TokenExpiry is when the provider's access token expires; gatehouse
	// refreshes a little before it. Optional.
	TokenExpiry time.Time

	// RefreshToken is the provider's refresh token. Secret. Optional.
	RefreshToken string
	// IDTokenHint is the raw ID token, kept for the id_token_hint of
	// RP-initiated logout. Secret. Optional: the cookie store drops it first
	// when the cookie would be too large.
	IDTokenHint string

	// Extra holds small per-route claims. Optional. Keys must not be empty.
	Extra map[string]string
}

// Format writes the redacted summary for every verb, so %v, %+v and %#v
// never print tokens.
func (s Session) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "session{id=%s iss=%q sub=%q provider=%q created=%s expires=%s}",
		s.ID.Ref(), s.Issuer, s.Subject, s.Provider,
		s.CreatedAt.UTC().Format(time.RFC3339), s.AbsoluteExpiry.UTC().Format(time.RFC3339))
}

// LogValue makes slog record the redacted summary as a group.
func (s Session) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", s.ID.Ref()),
		slog.String("iss", s.Issuer),
		slog.String("sub", s.Subject),
		slog.String("provider", s.Provider),
		slog.Time("created", s.CreatedAt),
		slog.Time("expires", s.AbsoluteExpiry),
	)
}

// Binary encoding, version 1. All integers are unsigned varints
// (encoding/binary) in their shortest form; a string is its length then its
// bytes; a time is its Unix seconds, with 0 for the zero time.
//
//	version (1 byte) | ID (32 bytes) | Issuer | Subject | Provider | Email |
//	Name | SID | len(Groups) | Groups... | CreatedAt | LastSeen |
//	AbsoluteExpiry | TokenExpiry | RefreshToken | IDTokenHint |
//	len(Extra) | (key, value)... in strictly increasing key order
//
// Every session has exactly one encoding, and decoding accepts only that
// one: no trailing bytes, no overlong varints, no unsorted or repeated keys.
const (
	encodingVersion = 1
	// maxEncoded bounds a whole encoded session. The cookie store's bound is
	// far smaller (MaxCookieValue); this one is for server-side stores.
	maxEncoded = 64 << 10
	// maxString bounds each string field, tokens included.
	maxString = 16 << 10
	maxGroups = 1024
	maxExtra  = 64
	// maxUnix is 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
	maxUnix = 253402300799
)

// ErrEncoding means a session cannot be encoded or decoded: the bytes are not
// a version 1 encoding, or a field is out of bounds. Its message never
// echoes the input.
var ErrEncoding = errors.New("session: invalid session encoding")

// MarshalBinary encodes s in the compact binary format described above. It
// fails when a field is out of bounds: a string over 16 KiB, more than 1024
// groups, more than 64 extra claims or an empty extra key, a non-zero time
// before 1970-01-01T00:00:01Z or after 9999, or more than 64 KiB in all.
func (s *Session) MarshalBinary() ([]byte, error) {
	strs := [...]string{s.Issuer, s.Subject, s.Provider, s.Email, s.Name, s.SID, s.RefreshToken, s.IDTokenHint}
	times := [...]time.Time{s.CreatedAt, s.LastSeen, s.AbsoluteExpiry, s.TokenExpiry}
	if len(s.Groups) > maxGroups || len(s.Extra) > maxExtra {
		return nil, fmt.Errorf("%w: too many groups or extra claims", ErrEncoding)
	}
	// n bounds the encoded length: every varint is at most MaxVarintLen64.
	n := 1 + len(s.ID) + 2*binary.MaxVarintLen64 + len(times)*binary.MaxVarintLen64
	for _, v := range strs {
		if len(v) > maxString {
			return nil, fmt.Errorf("%w: field longer than %d bytes", ErrEncoding, maxString)
		}
		n += binary.MaxVarintLen64 + len(v)
	}
	for _, g := range s.Groups {
		if len(g) > maxString {
			return nil, fmt.Errorf("%w: group longer than %d bytes", ErrEncoding, maxString)
		}
		n += binary.MaxVarintLen64 + len(g)
	}
	for k, v := range s.Extra {
		if k == "" || len(k) > maxString || len(v) > maxString {
			return nil, fmt.Errorf("%w: extra claim name empty or longer than %d bytes, or value too long", ErrEncoding, maxString)
		}
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	var unix [len(times)]uint64
	for i, t := range times {
		if t.IsZero() {
			continue
		}
		u := t.Unix()
		if u < 1 || u > maxUnix {
			return nil, fmt.Errorf("%w: time out of range", ErrEncoding)
		}
		unix[i] = uint64(u)
	}

	b := make([]byte, 0, n)
	b = append(b, encodingVersion)
	b = append(b, s.ID[:]...)
	for _, v := range strs[:6] { // Issuer ... SID
		b = appendString(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Groups)))
	for _, g := range s.Groups {
		b = appendString(b, g)
	}
	for _, u := range unix {
		b = binary.AppendUvarint(b, u)
	}
	b = appendString(b, s.RefreshToken)
	b = appendString(b, s.IDTokenHint)
	b = binary.AppendUvarint(b, uint64(len(s.Extra)))
	keys := make([]string, 0, len(s.Extra))
	for k := range s.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, s.Extra[k])
	}
	if len(b) > maxEncoded {
		return nil, fmt.Errorf("%w: encoding longer than %d bytes", ErrEncoding, maxEncoded)
	}
	return b, nil
}

// UnmarshalBinary decodes a session encoded by [Session.MarshalBinary]. It
// accepts only the canonical encoding, within the same bounds, and leaves s
// unchanged on error. Errors wrap [ErrEncoding].
func (s *Session) UnmarshalBinary(data []byte) error {
	if len(data) == 0 || len(data) > maxEncoded {
		return ErrEncoding
	}
	// One string holds every field's bytes; the fields are substrings of it,
	// so decoding allocates once for all of them.
	r := reader{s: string(data)}
	if r.byte() != encodingVersion {
		return ErrEncoding
	}
	var out Session
	copy(out.ID[:], r.bytes(len(out.ID)))
	out.Issuer = r.string()
	out.Subject = r.string()
	out.Provider = r.string()
	out.Email = r.string()
	out.Name = r.string()
	out.SID = r.string()
	if n := r.count(maxGroups); n > 0 {
		out.Groups = make([]string, n)
		for i := range out.Groups {
			out.Groups[i] = r.string()
		}
	}
	out.CreatedAt = r.time()
	out.LastSeen = r.time()
	out.AbsoluteExpiry = r.time()
	out.TokenExpiry = r.time()
	out.RefreshToken = r.string()
	out.IDTokenHint = r.string()
	if n := r.count(maxExtra); n > 0 {
		out.Extra = make(map[string]string, n)
		prev := ""
		for i := range n {
			k, v := r.string(), r.string()
			if k == "" || i > 0 && k <= prev {
				r.fail()
			}
			out.Extra[k] = v
			prev = k
		}
	}
	if r.bad || r.pos != len(r.s) {
		return ErrEncoding
	}
	*s = out
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes the binary encoding. After the first failure every method
// returns a zero value and bad stays set.
type reader struct {
	s   string
	pos int
	bad bool
}

func (r *reader) fail() {
	r.bad = true
	r.pos = len(r.s)
}

func (r *reader) byte() byte {
	if r.pos >= len(r.s) {
		r.fail()
		return 0
	}
	c := r.s[r.pos]
	r.pos++
	return c
}

func (r *reader) bytes(n int) string {
	if len(r.s)-r.pos < n {
		r.fail()
		return ""
	}
	v := r.s[r.pos : r.pos+n]
	r.pos += n
	return v
}

// uvarint reads an unsigned varint in its shortest form, at most max.
func (r *reader) uvarint(max uint64) uint64 {
	var x uint64
	for i := range binary.MaxVarintLen64 {
		c := r.byte()
		if r.bad {
			return 0
		}
		if c < 0x80 {
			// A final zero byte after the first means an overlong encoding;
			// the tenth byte may only hold the top bit of a uint64.
			if i > 0 && c == 0 || i == binary.MaxVarintLen64-1 && c > 1 {
				r.fail()
				return 0
			}
			x |= uint64(c) << (7 * i)
			if x > max {
				r.fail()
				return 0
			}
			return x
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	r.fail()
	return 0
}

func (r *reader) string() string {
	n := r.uvarint(maxString)
	return r.bytes(int(n)) //nolint:gosec // G115: n <= maxString
}

// count reads an element count, at most max and at most the bytes left (each
// element takes at least one).
func (r *reader) count(max int) int {
	n := int(r.uvarint(uint64(max))) //nolint:gosec // G115: 0 <= n <= max
	if n > len(r.s)-r.pos {
		r.fail()
		return 0
	}
	return n
}

func (r *reader) time() time.Time {
	u := r.uvarint(maxUnix)
	if u == 0 {
		return time.Time{}
	}
	return time.Unix(int64(u), 0).UTC() //nolint:gosec // G115: u <= maxUnix
}

// check reports whether s has the fields every stored session needs and
// consistent times. It is the last line against a session the store itself
// sealed wrongly, so its errors are generic.
func (s *Session) check() error {
	var missing []string
	if s.ID.IsZero() {
		missing = append(missing, "ID")
	}
	if s.Issuer == "" {
		missing = append(missing, "Issuer")
	}
	if s.Subject == "" {
		missing = append(missing, "Subject")
	}
	if s.CreatedAt.IsZero() {
		missing = append(missing, "CreatedAt")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrInvalid, strings.Join(missing, ", "))
	}
	if !s.LastSeen.IsZero() && s.LastSeen.Before(s.CreatedAt) {
		return fmt.Errorf("%w: LastSeen before CreatedAt", ErrInvalid)
	}
	if !s.AbsoluteExpiry.IsZero() && !s.AbsoluteExpiry.After(s.CreatedAt) {
		return fmt.Errorf("%w: AbsoluteExpiry not after CreatedAt", ErrInvalid)
	}
	return nil
}
