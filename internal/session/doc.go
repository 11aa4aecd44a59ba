// Package session is gatehouse's session: the record of a signed-in user
// ([Session]), the sealed-cookie codec with key rotation ([Codec]), the
// [Store] interface with its stateless cookie implementation
// ([CookieStore]), the in-memory [RevocationList] and the cookie helpers
// (security-notes §4, invariant I6). It imports no other gatehouse package.
//
// # Sealed format
//
// A sealed value is the unpadded base64url encoding (RFC 4648 §5) of
//
//	version (1) | len(key ID) | key ID (1-8 bytes of [A-Za-z0-9]) |
//	nonce (12 random bytes) | AES-256-GCM ciphertext | tag (16 bytes)
//
// The GCM additional data is the header (version, length and key ID)
// followed by the purpose: the cookie name, and for the cookie store its
// audience. A value therefore opens only for the purpose and under the key
// it was sealed for; changing the key ID, version or any other byte fails
// authentication (ASVS v4 3.5.3: tampering, enveloping, null cipher and key
// substitution). [Codec.Open] checks the length (at most [MaxCookieValue])
// and the alphabet before decoding, accepts only the one canonical encoding
// and reports [ErrMalformed], [ErrUnknownKey] or [ErrTampered], none of
// which echoes the input.
//
// The plaintext of a session cookie is [Session.MarshalBinary]: a
// versioned, length-prefixed binary encoding with varint times in Unix
// seconds, decoded strictly (no trailing bytes, bounded counts and lengths,
// canonical varints and ordering). A typical session with five groups and
// an opaque refresh token seals to under 500 bytes; a JWT refresh token and
// an ID token add about 1.3 bytes of cookie per byte of token. The ID
// token, kept only for logout's id_token_hint, is the first thing dropped
// when a session does not fit.
//
// # Key rotation
//
// The codec seals with its first key and opens with any. To rotate:
//
//  1. Add the new key in front of the old one and reload. New and touched
//     sessions are sealed with the new key; existing ones still open.
//  2. Wait for the absolute session lifetime (default 12 hours): every
//     value sealed with the old key has expired by then.
//  3. Remove the old key and reload.
//
// Removing a key at once instead ends every session sealed with it: the
// emergency procedure after a key leaks. Never give a new secret an ID that
// an old one had.
//
// # Timeouts and revocation
//
// [CookieStore.Load] enforces the absolute expiry and the idle timeout from
// the timestamps inside the sealed value, which the client cannot change.
// The idle timeout restarts only when [CookieStore.Touch] re-seals the
// cookie, at most every TouchInterval, so a session may end up to that much
// before the idle timeout, never after it.
//
// A stateless cookie stays valid until it expires, whatever happens on the
// server. So logout, back-channel logout and refresh failure must put the
// session on the [RevocationList], which Load consults; the list keeps each
// entry until every session it covers has expired, and it fails closed
// when full (see [RevocationList]). Revoking a subject or a provider
// session ID covers only sessions created before the revocation, so a user
// who signs in again afterwards gets a working session.
//
// Caveat (ASVS v5 7.4.1, "after termination the session is unusable"): the
// list is in memory. A restart empties it, and a revoked session whose
// cookie an attacker kept becomes usable again until its absolute expiry;
// with several gatehouse instances, each has its own list. Until the Redis
// store exists, either accept that window (bounded by the absolute
// lifetime; keep it short), or call [RevocationList.RevokeAll] at start-up
// so that a restart signs everyone out, or remove the sealing key.
package session
