// Package testenv starts real collaborators on 127.0.0.1 for end-to-end
// tests: the Dex OpenID provider as a separate process (Dex), and drives a
// browser login without a browser (Login). It is a normal package so that
// _test files anywhere can import it; it imports only the standard library,
// testing and golang.org/x/crypto/bcrypt.
//
// The Dex binary comes from tools/dex, a module of its own (make dex, or the
// first Dex call builds bin/dex): Dex's server, storage, connectors and
// signer, started by a small main of ours (tools/dex/main.go) because Dex's
// cmd/dex cannot be built from the module proxy. It reads the subset of Dex's
// configuration that Dex writes here and has no gRPC API. What follows was
// read in that Dex commit's source (github.com/dexidp/dex at
// v0.0.0-20260806151424-ab64ed778070), paths relative to the module.
//
// # Back-channel logout
//
// Dex sends OIDC Back-Channel Logout 1.0 logout tokens when a Dex session
// ends. Sessions exist only with DEX_SESSIONS_ENABLED=true (Dex sets that
// here); then discovery advertises end_session_endpoint ISSUER/logout,
// backchannel_logout_supported and backchannel_logout_session_supported, and
// ID tokens carry "sid" (server/discovery/discovery.go, server/tokens/claims.go).
// A client opts in with backchannelLogoutURI in staticClients
// (storage.Client.BackchannelLogoutURI).
//
// The trigger is RP-initiated logout: GET or POST ISSUER/logout with
// id_token_hint and optionally post_logout_redirect_uri (which must be in
// the client's postLogoutRedirectURIs, and needs id_token_hint) and state
// (server/logout/logout.go, handleLogout). The Dex session cookie decides
// whose session ends, not the hint, so the request must come from the same
// cookie jar that logged in; a hint whose sid does not match that session,
// or no hint on a GET, gets a confirmation page instead of a logout. (Dex's
// gRPC API can end sessions too, server/apiserver/sessions.go, but our Dex
// binary has no gRPC API.)
//
// The logout token (server/backchannel/backchannel.go) is POSTed as the form
// field logout_token, Content-Type application/x-www-form-urlencoded, to every
// client of the session that has a backchannelLogoutURI, in a goroutine after
// the logout response (fire and forget: 5 s timeout, no retry, redirects not
// followed). Claims: iss, aud (the client ID, a string), sub (the same opaque
// sub as in the ID token), sid (the Dex session ID, always present), iat, exp
// (iat + 2 min), jti, events {"http://schemas.openid.net/event/backchannel-logout": {}};
// no nonce. It is signed by the same signer as ID tokens with go-jose's
// default header: alg and kid only, no typ (server/signer/utils.go,
// signPayload uses empty jose.SignerOptions), so a relying party must not
// require typ "logout+jwt". Logout also revokes the refresh tokens of clients
// whose refresh tokens are bound to the session (refreshTokenLifetime
// "session").
//
// # Signing-key rotation
//
// The local signer (server/signer/local.go, rotation.go) rotates when
// keysRotationPeriod has passed since the last rotation, but it checks only
// at start and then every 30 s, so a 10 s period rotates every ~30 s. On
// rotation the old public key becomes a verification key that stays in the
// JWKS until the rotation time plus expiry.idTokens (IDTokenTTL), and is
// dropped at the first rotation check after that. The JWKS lists the
// current key first. Keys live in the storage: with memory storage a restart
// makes a fresh key and forgets the old ones; with Persistent (SQLite) they
// survive.
//
// # Groups on refresh
//
// With sessions (the default here), a refresh does not ask the connector: it
// takes the claims Dex cached in the user's UserIdentity at the last login
// (server/grants/refresh.go), so refreshed ID tokens keep the groups of the
// login even after the user changed. Without sessions (DisableSessions), a
// refresh goes through the password connector, which re-reads the user and
// takes its groups (server/connectors/password.go, passwordDB.Refresh).
//
// Static passwords are an in-memory overlay built from the config at start
// (storage/static.go, WithStaticPasswords), and the gRPC API could not change
// groups anyway (CreatePassword and UpdatePassword have no groups field). So
// "refresh with changed groups" is Restart with different Users, Persistent
// and DisableSessions set: the SQLite storage (sqlite3; Dex builds it with
// cgo, storage/sql/sqlite.go is //go:build cgo) keeps the refresh tokens and
// signing keys across the restart, and the new static users supply the new
// groups. With memory storage a restart loses every refresh token
// (invalid_grant).
//
// Without sessions, this Dex commit deadlocks on every refresh with the
// memory and SQLite storages: it reads the offline session inside the
// refresh token's update transaction, which holds the storage's only lock or
// connection. tools/dex works around it when sessions are off (storage.go,
// refreshOutsideLock: the update runs outside the lock, then compare and
// swap); Postgres or MySQL storage would not need that.
package testenv
