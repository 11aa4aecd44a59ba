// Package token verifies bearer JWT access tokens presented to gatehouse by
// APIs and CLIs (Authorization: Bearer ...). It is a leaf package: it takes its
// own [Options] and imports no other gatehouse package. Browser sessions,
// ID tokens and logout tokens are verified elsewhere; this package refuses them.
//
// # Rules
//
// [Verifier.Verify] applies these rules in this order; the first that fails
// decides the error (see [Reason] for the audit reasons).
//
//  1. Pre-check, before any parsing: at most Options.MaxTokenBytes (8 KiB),
//     and exactly ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ — the JWS
//     compact serialization only, so no JWS JSON serialization and no JWE.
//     Each base64url segment must be canonical (a possible length, zero
//     trailing bits), so a token has exactly one spelling.
//  2. Header, decoded with go-jose's strict JSON (duplicate names refused):
//     a token carrying jwk, jku, x5u or x5c is refused outright — keys come
//     only from the issuer's configured JWKS, never from the token, and
//     nothing a token names is ever fetched — as is any crit (gatehouse
//     understands no extension), b64, enc or zip. kid is at most 256 bytes
//     and is only ever a map key.
//  3. Algorithm: go-jose's jwt.ParseSigned with the pinned algorithms; later
//     the alg must be pinned for the token's own issuer. none and HS* can
//     never be pinned ([New] refuses them), and a JWKS oct entry is never
//     turned into a key, so a token cannot be MACed with a public key.
//  4. Issuer choice: the unverified iss, compared exactly, only selects the
//     issuer's key set. An iss in Options.RejectIssuers (gatehouse's own
//     assertion issuer) is refused here, even if it were correctly signed.
//  5. Key: from the issuer's JWKS by kid. The key's family and curve must fit
//     alg, the JWK's alg (if it has one) must equal the header alg, and its
//     use must be sig or absent. A token without kid is accepted only if
//     exactly one key fits. The JWKS is fetched on first use, refetched on an
//     unknown kid or after Options.RefreshInterval, never more often than
//     Options.MinRefetch, with concurrent refetches coalesced. With no key set
//     at all (first fetch failed), verification fails closed.
//  6. Signature, by go-jose with the selected public key.
//  7. Claims, only now trusted, decoded once with go-jose's strict JSON:
//     case-sensitive names, duplicate names refused, registered claims of the
//     wrong type refused. iss must equal the issuer exactly; sub must be
//     non-empty; aud must contain one configured audience; exp and iat are
//     required. With one leeway L (Options.Leeway, 60s): now < exp+L;
//     nbf-L <= now when nbf is present; iat <= now+L; and iat no older than
//     Options.MaxAge (24h).
//
// # Token type
//
// An access token must not be confused with an ID token or a logout token
// from the same issuer (security-notes §1.6 item 6, RFC 8725 §3.11). The rule:
//
//   - typ at+jwt (RFC 9068; any case, optional "application/" prefix): an
//     access token. The issuer signed that type, which settles it.
//   - typ JWT or no typ: an access token only if the payload has none of
//     nonce, at_hash, c_hash (ID-token claims) and no events claim.
//   - any other typ (logout+jwt, secevent+jwt, dpop+jwt, gatehouse's
//     assertion type, ...): refused.
//   - an events claim is refused whatever the typ.
//
// An ID token without nonce, at_hash and c_hash is indistinguishable by these
// rules from an access token, which is why Issuer.Audiences should hold an API
// audience distinct from every OIDC client_id (an ID token's aud is the
// client_id). When the issuer emits RFC 9068 tokens, set
// Issuer.RequireAccessTokenType to accept typ at+jwt only.
//
// # Caching
//
// Verified tokens are cached by the SHA-256 of the token until min(exp,
// iat+MaxAge), at most Options.CacheSize (10,000) entries, oldest evicted
// first. A cached token is not served once the key that verified it has left
// the issuer's key set, or while the set is due for refresh (the next uncached
// verification refetches it). A repeated token therefore costs a hash and a
// map lookup. Failures are not cached. The cache holds hashes, never tokens.
//
// # Errors
//
// Errors wrap one sentinel (ErrMalformed, ErrExpired, ...) and never contain
// the token or any part of it: no header or claim value, kid, iss or alg.
// [Reason] maps them to kebab-case audit reasons.
package token
