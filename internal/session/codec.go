package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
)

// MaxCookieValue is the longest sealed value, in bytes, that [Codec.Seal]
// produces and [Codec.Open] accepts: 3840. ASVS v5 3.3.5 and RFC 6265 §6.1
// budget 4096 bytes for a cookie's name and value (some browsers count the
// attributes as well); from that, 64 bytes are kept for the name and "=" and
// 192 for the attributes [SessionCookie] sets.
const MaxCookieValue = 4096 - 64 - 192

// Errors returned by [Codec.Seal] and [Codec.Open]. Each is a distinct value
// for [errors.Is]; none of them echoes the input, so they are safe to log and
// cheap to return.
var (
	// ErrMalformed means the value is not in the sealed format: wrong length,
	// a byte outside the unpadded base64url alphabet, non-canonical base64,
	// an unknown format version or a key ID of the wrong length.
	ErrMalformed = errors.New("session: malformed sealed value")
	// ErrUnknownKey means the value is well-formed but names a key ID the
	// codec does not hold: it was sealed with a key that has since been
	// removed, or by someone else.
	ErrUnknownKey = errors.New("session: sealed with an unknown key")
	// ErrTampered means authentication failed: the value was modified, was
	// sealed for another purpose, or was sealed under another secret that
	// reuses the key ID.
	ErrTampered = errors.New("session: sealed value failed authentication")
	// ErrTooLarge means the sealed value would be longer than
	// [MaxCookieValue].
	ErrTooLarge = errors.New("session: sealed value would exceed MaxCookieValue")
)

// Sealed format, before base64url encoding (RFC 4648 §5, no padding):
//
//	version (1 byte, formatVersion) | len(key ID) (1 byte) | key ID |
//	nonce (12 bytes, random) | AES-256-GCM ciphertext | tag (16 bytes)
//
// The additional data is the header (version, length, key ID) followed by
// the purpose, so neither can be changed without failing authentication.
const (
	formatVersion = 1
	maxKeyID      = 8
	secretSize    = 32 // AES-256
	gcmOverhead   = 12 + 16
	// minRaw is the shortest decoded value: a one-byte key ID and an empty
	// plaintext.
	minRaw = 2 + 1 + gcmOverhead
)

// b64 is the sealed value's encoding. Strict rejects non-zero trailing bits,
// so every value has exactly one encoding; CR and LF, which the decoder would
// skip even in strict mode, are rejected before decoding.
var b64 = base64.RawURLEncoding.Strict()

// Key is one AES-256-GCM key. Its ID is carried in every value sealed with it,
// so that [Codec.Open] knows which key to use.
type Key struct {
	// ID names the key: 1 to 8 characters from [A-Za-z0-9]. IDs are not
	// secret. Never reuse an ID for a different secret: values sealed under
	// the old secret would then fail as tampered instead of as unknown.
	ID string
	// Secret is the key material: exactly 32 bytes from a CSPRNG. Use it
	// for nothing else.
	Secret []byte
}

// Codec seals values with the first of its keys and opens values sealed with
// any of them. It is immutable and safe for concurrent use.
//
// Rotation: build a codec with the new key first and the old one after it;
// keep the old key until every value sealed with it has expired (for sessions:
// the absolute lifetime, since the last re-seal refreshes the key); then
// remove it. Removing a key ends every session still sealed with it.
type Codec struct {
	// keys[0] seals; all open.
	keys []codecKey
}

type codecKey struct {
	id   string
	hdr  []byte // version, len(id), id
	aead cipher.AEAD
}

// NewCodec returns a codec over keys, the first of which seals. It reports
// every problem: no keys, an ID that is empty, too long or outside
// [A-Za-z0-9], a duplicate ID, a secret that is not 32 bytes, is all zeros,
// or is shared by two IDs. The secrets are not retained; only the expanded
// AES key schedules are.
func NewCodec(keys []Key) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("session: codec needs at least one key")
	}
	var errs []error
	c := &Codec{keys: make([]codecKey, 0, len(keys))}
	for i, k := range keys {
		if !validKeyID(k.ID) {
			errs = append(errs, fmt.Errorf("session: key %d: ID must be 1 to %d characters from [A-Za-z0-9]", i, maxKeyID))
		}
		for _, prev := range keys[:i] {
			if prev.ID == k.ID {
				errs = append(errs, fmt.Errorf("session: key %d: duplicate ID %q", i, k.ID))
			}
			if len(k.Secret) == secretSize && bytes.Equal(prev.Secret, k.Secret) {
				errs = append(errs, fmt.Errorf("session: key %d (%q): same secret as key %q", i, k.ID, prev.ID))
			}
		}
		if len(k.Secret) != secretSize {
			errs = append(errs, fmt.Errorf("session: key %d (%q): secret is %d bytes, want %d", i, k.ID, len(k.Secret), secretSize))
			continue
		}
		if allZero(k.Secret) {
			errs = append(errs, fmt.Errorf("session: key %d (%q): secret is all zeros", i, k.ID))
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			errs = append(errs, fmt.Errorf("session: key %d (%q): %w", i, k.ID, err))
			continue
		}
		// The random-nonce wrapper draws a fresh 96-bit nonce from crypto/rand
		// for every Seal and is the FIPS 140-3 approved way to use GCM.
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			errs = append(errs, fmt.Errorf("session: key %d (%q): %w", i, k.ID, err))
			continue
		}
		hdr := append([]byte{formatVersion, byte(len(k.ID))}, k.ID...) //nolint:gosec // G115: an ID longer than maxKeyID was reported above
		c.keys = append(c.keys, codecKey{id: k.ID, hdr: hdr, aead: aead})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// KeyIDs returns the IDs of the codec's keys, the sealing key first.
func (c *Codec) KeyIDs() []string {
	ids := make([]string, len(c.keys))
	for i, k := range c.keys {
		ids[i] = k.id
	}
	return ids
}

// Seal encrypts and authenticates plaintext with the first key, binding
// purpose (for example the cookie name) as additional data: a value sealed
// for one purpose fails to open for any other. Purpose must not be empty.
// Every call draws a fresh random nonce, so sealing the same plaintext twice
// gives different values. Seal returns [ErrTooLarge] when the result would be
// longer than [MaxCookieValue].
//
// A key must seal fewer than 2^32 values (the random-nonce bound); at a
// thousand seals a second that is over a century, but rotate anyway.
func (c *Codec) Seal(purpose string, plaintext []byte) (string, error) {
	if purpose == "" {
		return "", errEmptyPurpose
	}
	k := &c.keys[0]
	if c.sealedLen(len(plaintext)) > MaxCookieValue {
		return "", ErrTooLarge
	}
	raw := make([]byte, len(k.hdr), len(k.hdr)+gcmOverhead+len(plaintext))
	copy(raw, k.hdr)
	// The nonce is nil because the random-nonce AEAD draws its own.
	raw = k.aead.Seal(raw, nil, plaintext, additionalData(k.hdr, purpose)) //nolint:gosec // G407: see above
	return b64.EncodeToString(raw), nil
}

// Open authenticates and decrypts a value sealed by [Codec.Seal] for the same
// purpose. It checks the length before decoding anything and accepts exactly
// one encoding of each value. The error is [ErrMalformed], [ErrUnknownKey] or
// [ErrTampered].
func (c *Codec) Open(purpose, sealed string) ([]byte, error) {
	if purpose == "" {
		return nil, errEmptyPurpose
	}
	if len(sealed) < b64.EncodedLen(minRaw) || len(sealed) > MaxCookieValue {
		return nil, ErrMalformed
	}
	for i := 0; i < len(sealed); i++ {
		if !isBase64URL(sealed[i]) {
			return nil, ErrMalformed
		}
	}
	raw := make([]byte, b64.DecodedLen(len(sealed)))
	n, err := b64.Decode(raw, []byte(sealed))
	if err != nil {
		return nil, ErrMalformed
	}
	raw = raw[:n]
	if raw[0] != formatVersion {
		return nil, ErrMalformed
	}
	idLen := int(raw[1])
	if idLen < 1 || idLen > maxKeyID || len(raw) < 2+idLen+gcmOverhead {
		return nil, ErrMalformed
	}
	hdr, body := raw[:2+idLen], raw[2+idLen:]
	k := c.key(hdr[2:])
	if k == nil {
		return nil, ErrUnknownKey
	}
	plaintext, err := k.aead.Open(body[:0], nil, body, additionalData(hdr, purpose))
	if err != nil {
		return nil, ErrTampered
	}
	return plaintext, nil
}

// sealedLen is the length of the value Seal produces for a plaintext of n
// bytes.
func (c *Codec) sealedLen(n int) int {
	return b64.EncodedLen(len(c.keys[0].hdr) + gcmOverhead + n)
}

func (c *Codec) key(id []byte) *codecKey {
	for i := range c.keys {
		if string(id) == c.keys[i].id {
			return &c.keys[i]
		}
	}
	return nil
}

var errEmptyPurpose = errors.New("session: empty sealing purpose")

// additionalData is the header followed by the purpose. The header carries
// its own length, so the concatenation is unambiguous.
func additionalData(hdr []byte, purpose string) []byte {
	ad := make([]byte, 0, len(hdr)+len(purpose))
	ad = append(ad, hdr...)
	return append(ad, purpose...)
}

func validKeyID(id string) bool {
	if len(id) < 1 || len(id) > maxKeyID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isAlphanumeric(id[i]) {
			return false
		}
	}
	return true
}

func isAlphanumeric(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isBase64URL(c byte) bool {
	return isAlphanumeric(c) || c == '-' || c == '_'
}

func allZero(b []byte) bool {
	var acc byte
	for _, x := range b {
		acc |= x
	}
	return acc == 0
}
