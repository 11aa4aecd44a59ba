// Package assertion mints the signed identity assertion gatehouse hands to
// upstream apps, in the manner of Google IAP's x-goog-iap-jwt-assertion, and
// publishes the keys that verify it. It is a leaf package: it takes its own
// [Options] and imports no other gatehouse package. Which header carries the
// assertion is decided elsewhere (internal/idheader).
//
// # The assertion
//
// An assertion is a JWS compact serialization (a JWT) signed with ES256
// (ECDSA P-256, SHA-256). Its protected header is
//
//	{"alg":"ES256","kid":"<key ID>","typ":"gatehouse-assertion+jwt"}
//
// and its claims are
//
//	iss     gatehouse's public URL (Options.Issuer), e.g. "https://auth.example.com"
//	aud     the origin of the route the request is for, e.g. "https://app.example.com"
//	sub     the user's subject at their identity provider
//	idp     the user's identity provider (the ID token's iss); key users on (idp, sub)
//	email   the user's email address (omitted when unknown)
//	groups  the user's groups, always an array
//	iat     when it was minted (seconds since the epoch)
//	exp     iat + Options.TTL; the TTL is at most 5 minutes (default 5 minutes)
//	jti     128 random bits, base64url without padding
//
// The typ and iss keep assertions apart from every other JWT in the system:
// an assertion is never an ID token or access token, and gatehouse itself
// never accepts one as a credential (its bearer-token verifier rejects
// gatehouse's iss). The per-origin aud means an assertion captured by one
// app cannot be replayed to another.
//
// # Verifying an assertion (in the app)
//
//  1. Fetch the JWK Set from https://<gatehouse>/.well-known/gatehouse/jwks.json
//     ([JWKSPath]) and cache it (it is served with max-age=300). On an unknown
//     kid, refetch, but no more than once a minute or so.
//  2. Parse the token with the algorithm pinned to ES256 and nothing else
//     (go-jose: jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})).
//     Never take a key from the token itself (jwk, jku, x5u, x5c).
//  3. Select the key by kid and verify the signature.
//  4. Check typ == "gatehouse-assertion+jwt", iss == the gatehouse URL
//     exactly, aud == the app's own origin exactly, and exp (and iat) against
//     the clock with a small leeway (e.g. 30 s). A token without exp is invalid.
//  5. Identify the user by (idp, sub); email and groups are attributes.
//
// Only accept the assertion on a link gatehouse alone can reach; the
// signature proves gatehouse made it, the aud proves it was made for you.
//
// # Key rotation
//
// [Options.Keys][0] signs; every key in Options.Keys is published. Verifiers
// may hold a JWKS for up to 5 minutes and an assertion lives up to TTL, so
// each step waits at least TTL + 5 minutes (10 minutes with the defaults):
//
//  1. Add the new key second: Keys = [old, new]. Gatehouse publishes it but
//     still signs with old. Wait.
//  2. Move it first: Keys = [new, old]. Gatehouse signs with new; old stays
//     published so assertions it signed still verify. Wait.
//  3. Remove the old key: Keys = [new].
//
// Each step is a configuration reload, which builds a new [Signer] (and so
// starts with an empty cache). Keys can be kept as PEM ([ParseKeyPEM],
// [MarshalKeyPEM]) behind a secret reference; [GenerateKey] makes new ones.
//
// # Caching
//
// Minting costs an ECDSA signature, so the request path uses [Signer.Get],
// which reuses an assertion per (session, audience, identity) until it is
// within the refresh margin of its expiry. The identity is part of the key
// (as a SHA-256), so a refreshed session with changed groups gets a new
// assertion at once.
package assertion
