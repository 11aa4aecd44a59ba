package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Errors returned by [Store] methods besides the codec's. Each is a distinct
// value for [errors.Is] and never echoes the input. Every one of them means
// "no session": the caller starts a new login.
var (
	// ErrExpired means the session reached its absolute expiry.
	ErrExpired = errors.New("session: expired")
	// ErrIdle means the session was idle longer than the idle timeout.
	ErrIdle = errors.New("session: idle timeout")
	// ErrRevoked means the session was ended by logout, back-channel logout
	// or refresh failure.
	ErrRevoked = errors.New("session: revoked")
	// ErrInvalid means a session lacks a required field (ID, Issuer,
	// Subject, CreatedAt), has inconsistent times, or has timestamps too far
	// in the future for this clock to have written them.
	ErrInvalid = errors.New("session: invalid session")
)

// Store keeps sessions. Every method takes the current time, so that tests
// and callers agree on one clock; every error means "no session" to the
// caller, who must fail closed.
//
// Revocations take no expiry time: the store knows its absolute lifetime and
// keeps each revocation until every session it covers has expired, so a
// caller cannot end a revocation early by passing too short a time.
type Store interface {
	// Load returns the session that value (the cookie's value) stands for.
	// It enforces the absolute expiry and idle timeout from the stored
	// timestamps (ErrExpired, ErrIdle) and the revocations (ErrRevoked).
	// The session may be shared with other callers that loaded the same
	// value: treat it as read-only (copy it to change it).
	Load(ctx context.Context, value string, now time.Time) (*Session, error)

	// Save stores s and returns the cookie value to set: for the cookie
	// store the sealed session itself, for a server-side store an opaque
	// reference. It does not modify s.
	Save(ctx context.Context, s *Session, now time.Time) (string, error)

	// Touch records that s, just loaded, is in use at now, so that the idle
	// timeout restarts. It returns a new cookie value to set, or "" when the
	// current one stays valid (the last touch was recent enough, or the
	// store keeps LastSeen itself). It does not modify s.
	Touch(ctx context.Context, s *Session, now time.Time) (string, error)

	// Revoke ends s, at logout or when a refresh fails.
	Revoke(ctx context.Context, s *Session, now time.Time) error

	// RevokeBySID ends every session of the provider session (issuer, sid)
	// created at or before now, for back-channel logout. Sessions created
	// later, by signing in again, are not affected.
	RevokeBySID(ctx context.Context, issuer, sid string, now time.Time) error

	// RevokeBySubject ends every session of the user (issuer, subject)
	// created at or before now, for back-channel logout without a sid and
	// for disabled users (ASVS v5 7.4.2). Later sessions are not affected.
	RevokeBySubject(ctx context.Context, issuer, subject string, now time.Time) error
}

// Defaults for [CookieOptions].
const (
	DefaultIdleTimeout      = 30 * time.Minute
	DefaultAbsoluteLifetime = 12 * time.Hour
)

// maxClockSkew is how far in the future a sealed CreatedAt or LastSeen may
// be, for instances whose clocks disagree a little.
const maxClockSkew = time.Minute

// CookieOptions configures a [CookieStore].
type CookieOptions struct {
	// Codec seals and opens the cookie value. Required.
	Codec *Codec

	// Name is the cookie's name without the __Host- prefix, such as
	// "gh_session": a cookie-name token (RFC 6265 §4.1.1), at most 32
	// bytes. It is bound to every sealed value, so a value sealed under
	// another name (the login flow cookie, say) never opens as a session.
	// Required.
	Name string

	// Audience, when set, is bound to every sealed value too, so that a
	// cookie issued for one host is refused by a store for another. Set it
	// to the host the cookie is issued for when one gatehouse serves
	// several hosts with separate cookies. Default: none.
	Audience string

	// IdleTimeout ends a session that has not been touched for this long.
	// Default: 30 minutes. Because LastSeen is re-sealed only every
	// TouchInterval, a session can end up to TouchInterval earlier than
	// this after its last request; never later.
	IdleTimeout time.Duration

	// AbsoluteLifetime ends every session this long after it was created,
	// however active. It applies to sessions sealed before a change of
	// configuration as well. Default: 12 hours. Must be at least
	// IdleTimeout.
	AbsoluteLifetime time.Duration

	// TouchInterval is how old LastSeen must be before Touch re-seals the
	// cookie. Smaller is more precise and sends Set-Cookie more often.
	// Default: a tenth of IdleTimeout. Must be less than IdleTimeout.
	TouchInterval time.Duration

	// Revocations is the list that makes revocation work for a stateless
	// cookie. Required. Keep one list for the life of the process and pass
	// it to every store built on reload: a new list would forget every
	// revocation.
	Revocations *RevocationList
}

// CookieStore is a [Store] that keeps the whole session in the cookie,
// sealed by a [Codec], and keeps revocations in a [RevocationList]. It is
// immutable and safe for concurrent use. See the package documentation for
// what a restart does to revocations.
type CookieStore struct {
	codec       *Codec
	purpose     string
	idle        time.Duration
	absolute    time.Duration
	touch       time.Duration
	revocations *RevocationList

	opened openedCache // sealed value → its opened, validated session
}

// openedCache remembers sessions already opened, by their sealed value, so
// that the requests of a session after its first cost a map lookup instead
// of AES-GCM and decoding. A sealed value is authenticated, so the same
// value always opens to the same session; what depends on the time (expiry,
// idle timeout) and on revocation is checked on every Load regardless.
type openedCache struct {
	mu sync.RWMutex // guards m
	m  map[string]*Session
}

// maxOpened bounds the cache: about 15 MB with typical sessions.
const maxOpened = 10_000

func (oc *openedCache) get(value string) *Session {
	oc.mu.RLock()
	s := oc.m[value]
	oc.mu.RUnlock()
	return s
}

func (oc *openedCache) put(value string, s *Session) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if oc.m == nil {
		oc.m = make(map[string]*Session)
	}
	if len(oc.m) >= maxOpened {
		// Drop a tenth, in map order (effectively random).
		n := maxOpened / 10
		for k := range oc.m {
			delete(oc.m, k)
			if n--; n == 0 {
				break
			}
		}
	}
	oc.m[value] = s
}

var _ Store = (*CookieStore)(nil)

// NewCookieStore validates opts, applies the defaults and returns the store.
// It reports every problem at once.
func NewCookieStore(opts CookieOptions) (*CookieStore, error) {
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.AbsoluteLifetime == 0 {
		opts.AbsoluteLifetime = DefaultAbsoluteLifetime
	}
	if opts.TouchInterval == 0 {
		opts.TouchInterval = opts.IdleTimeout / 10
	}
	var errs []error
	if opts.Codec == nil {
		errs = append(errs, errors.New("session: cookie store needs a Codec"))
	}
	if !validCookieName(opts.Name) {
		errs = append(errs, fmt.Errorf("session: cookie name %q must be 1 to %d token characters without a __Host- or __Secure- prefix", opts.Name, maxCookieName))
	}
	if strings.IndexByte(opts.Audience, 0) >= 0 {
		errs = append(errs, errors.New("session: cookie audience contains a NUL byte"))
	}
	if opts.IdleTimeout < time.Second {
		errs = append(errs, fmt.Errorf("session: idle timeout %v is less than a second", opts.IdleTimeout))
	}
	if opts.AbsoluteLifetime < opts.IdleTimeout {
		errs = append(errs, fmt.Errorf("session: absolute lifetime %v is shorter than the idle timeout %v", opts.AbsoluteLifetime, opts.IdleTimeout))
	}
	if opts.TouchInterval < 0 || opts.TouchInterval >= opts.IdleTimeout {
		errs = append(errs, fmt.Errorf("session: touch interval %v must be between 0 and the idle timeout %v", opts.TouchInterval, opts.IdleTimeout))
	}
	if opts.Revocations == nil {
		errs = append(errs, errors.New("session: cookie store needs a RevocationList (ASVS 7.4.1)"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Sessions sealed under an earlier, longer lifetime keep their sealed
	// AbsoluteExpiry, so subject and SID revocations must last as long as
	// the longest lifetime any store on this list has had.
	opts.Revocations.extendRetention(opts.AbsoluteLifetime)
	return &CookieStore{
		codec: opts.Codec,
		// A cookie name cannot contain NUL, so the purpose is unambiguous.
		purpose:     opts.Name + "\x00" + opts.Audience,
		idle:        opts.IdleTimeout,
		absolute:    opts.AbsoluteLifetime,
		touch:       opts.TouchInterval,
		revocations: opts.Revocations,
	}, nil
}

// Open opens a sealed session without checking its times or revocation:
// for cleaning up what an ended session held (the app sessions bound to
// it), never to authorize a request.
func (c *CookieStore) Open(value string) (*Session, error) {
	s, _, err := c.open(value)
	return s, err
}

// open returns the session sealed in value, from the opened-session cache
// when it is there (cached), else unsealed and decoded.
func (c *CookieStore) open(value string) (s *Session, cached bool, err error) {
	if s := c.opened.get(value); s != nil {
		return s, true, nil
	}
	plaintext, err := c.codec.Open(c.purpose, value)
	if err != nil {
		return nil, false, err
	}
	s = new(Session)
	if err := s.UnmarshalBinary(plaintext); err != nil {
		return nil, false, err
	}
	return s, false, nil
}

// NeverWaits reports that the store's methods do no I/O (the session is
// in the cookie and revocations in memory), so callers that must not block
// may use it inline. A store without this method is assumed to wait (on a
// network database).
func (c *CookieStore) NeverWaits() bool { return true }

// Load opens the sealed session in value and checks it. The error is a codec
// error ([ErrMalformed], [ErrUnknownKey], [ErrTampered]), [ErrEncoding],
// [ErrInvalid], [ErrExpired], [ErrIdle] or [ErrRevoked].
func (c *CookieStore) Load(_ context.Context, value string, now time.Time) (*Session, error) {
	s, cached, err := c.open(value)
	if err != nil {
		return nil, err
	}
	if !cached {
		// Save fills LastSeen and AbsoluteExpiry, so a sealed session has
		// them.
		if s.check() != nil || s.LastSeen.IsZero() || s.AbsoluteExpiry.IsZero() {
			return nil, ErrInvalid
		}
		c.opened.put(value, s)
	}
	if late := now.Add(maxClockSkew); s.CreatedAt.After(late) || s.LastSeen.After(late) {
		return nil, ErrInvalid
	}
	if !now.Before(s.AbsoluteExpiry) || !now.Before(s.CreatedAt.Add(c.absolute)) {
		return nil, ErrExpired
	}
	if now.Sub(s.LastSeen) >= c.idle {
		return nil, ErrIdle
	}
	if c.revocations.Revoked(s) {
		return nil, ErrRevoked
	}
	return s, nil
}

// Save seals s into a cookie value. A zero LastSeen is taken as CreatedAt;
// AbsoluteExpiry is capped at CreatedAt plus the absolute lifetime (zero
// means that cap). When the value would exceed [MaxCookieValue], Save leaves
// out IDTokenHint; if it is still too long, it returns [ErrTooLarge], and
// the caller should trim Groups or Extra or use a server-side store. Save
// returns [ErrInvalid] for a session without ID, Issuer, Subject or
// CreatedAt, and [ErrExpired] for one already expired at now.
func (c *CookieStore) Save(_ context.Context, s *Session, now time.Time) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	t := *s
	if t.LastSeen.IsZero() {
		t.LastSeen = t.CreatedAt
	}
	if limit := t.CreatedAt.Add(c.absolute); t.AbsoluteExpiry.IsZero() || t.AbsoluteExpiry.After(limit) {
		t.AbsoluteExpiry = limit
	}
	if !now.Before(t.AbsoluteExpiry) {
		return "", ErrExpired
	}
	plaintext, err := t.MarshalBinary()
	if err != nil {
		return "", err
	}
	if c.codec.sealedLen(len(plaintext)) > MaxCookieValue && t.IDTokenHint != "" {
		t.IDTokenHint = ""
		if plaintext, err = t.MarshalBinary(); err != nil {
			return "", err
		}
	}
	return c.codec.Seal(c.purpose, plaintext)
}

// Touch re-seals s with LastSeen set to now when LastSeen is at least
// TouchInterval old, and returns "" otherwise.
func (c *CookieStore) Touch(ctx context.Context, s *Session, now time.Time) (string, error) {
	if now.Sub(s.LastSeen) < c.touch {
		return "", nil
	}
	t := *s
	t.LastSeen = now
	return c.Save(ctx, &t, now)
}

// Revoke puts s's ID on the revocation list until s's sealed absolute
// expiry, after which Load refuses it anyway. It expects s as Load returned
// it.
func (c *CookieStore) Revoke(_ context.Context, s *Session, now time.Time) error {
	until := s.AbsoluteExpiry
	if until.IsZero() {
		until = now.Add(c.revocations.retention())
	}
	return c.revocations.Revoke(s, now, until)
}

// RevokeBySID puts (issuer, sid) on the revocation list for as long as a
// session created at or before now could live.
func (c *CookieStore) RevokeBySID(_ context.Context, issuer, sid string, now time.Time) error {
	return c.revocations.RevokeSID(issuer, sid, now, now.Add(c.revocations.retention()))
}

// RevokeBySubject puts (issuer, subject) on the revocation list for as long
// as a session created at or before now could live.
func (c *CookieStore) RevokeBySubject(_ context.Context, issuer, subject string, now time.Time) error {
	return c.revocations.RevokeSubject(issuer, subject, now, now.Add(c.revocations.retention()))
}

// maxCookieName bounds CookieOptions.Name; MaxCookieValue leaves 64 bytes
// for the prefixed name and "=".
const maxCookieName = 32

// validCookieName reports whether name is a token (RFC 6265 §4.1.1, RFC 9110
// §5.6.2) of at most maxCookieName bytes that does not start with a cookie
// prefix, which SessionCookie adds itself.
func validCookieName(name string) bool {
	if name == "" || len(name) > maxCookieName {
		return false
	}
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, "__host-") || strings.HasPrefix(lower, "__secure-") {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
