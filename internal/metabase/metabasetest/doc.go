// Package metabasetest is a test double of Metabase: an HTTP server on
// 127.0.0.1 that follows ../shared/metabase-contract.md (the "contract",
// Metabase "version 65", late 2025 to mid 2026) so that gatehouse's Metabase
// integration can be tested on a machine where Metabase itself cannot run.
// It is not Metabase and must not be read as documentation of Metabase; the
// contract is the reference, and where the two disagree the server is wrong.
//
// What it implements, by contract section:
//
//   - 1.1 to 1.8, JWT SSO: GET /auth/sso with a jwt (HS256 only, the header's
//     alg ignored, the secret's raw UTF-8 bytes as key; exp with no leeway,
//     nbf, iat no older than 180 s; iss, aud and sub unchecked), without a jwt
//     (302 to the identity provider URI, redirect → return_to), and POST
//     /auth/sso (501, HTML). The checks run in the contract's order: the
//     sso-jwt feature (402), then JWT enabled (401), then the token. Users are
//     found by case-insensitive email, provisioned, or reactivated when
//     provisioning is on; names are kept when the claims omit them; other
//     scalar claims become jwt attributes; sso_source becomes "jwt". Group
//     sync runs at login only and only when the groups claim is present, with
//     both cases of 1.6: mappings (only mapped group ids are managed) and
//     exact-name matching (every other group is removed, Administrators
//     included), never All Users, and never the last admin. return_to must be
//     relative or on site-url's host (1.5), and the 302 Location is return_to
//     exactly as given.
//   - 1.9, the JSON mode for the embedding SDK (X-Metabase-Client header):
//     {"status":"ok","id":…} without cookies, or 402 when the SDK setting is off.
//   - 2.1 to 2.4, sessions: the metabase.SESSION, metabase.TIMEOUT and
//     metabase.DEVICE cookies with their attributes, Secure decided per request
//     from X-Forwarded-Proto and friends (2.2), the lookup order (a cookie wins
//     over X-Metabase-Session; values that are not UUIDs are ignored), then
//     x-api-key; metabase.TIMEOUT re-issued on each request that had a valid
//     session cookie; the absolute MAX_SESSION_AGE; POST /api/session with the
//     per-username (10) and per-IP (50) failed-login throttle; DELETE
//     /api/session (204, or 404); GET /api/user/current; GET
//     /api/session/properties; GET /api/health (200, or 503 while
//     "initializing", when every other /api/* call answers 503 too).
//   - 3.2 to 3.4, the admin API: API keys as hidden users in All Users plus
//     their group; GET/POST /api/user, GET/PUT/DELETE /api/user/:id, PUT
//     /api/user/:id/password (complexity checked, all the user's sessions
//     deleted, a new session only for the caller itself), PUT
//     /api/user/:id/reactivate; the group endpoints; the membership endpoints,
//     with All Users untouchable and the last admin kept.
//   - 4, the routes: an SPA-like page at / and every unknown path (such as
//     /dashboard/12) that shows which user it sees, /auth/login with the SSO
//     button of a JWT-enabled Metabase, and /public/*, /embed/*, /api/public/*,
//     /api/embed/*, /app/* and /favicon.ico answering without a session.
//
// What it leaves out on purpose: SAML, LDAP, Google Sign-In, SCIM (section
// 5), the metabase.EMBEDDED_SESSION cookie with its anti-CSRF header, the
// session-timeout idle setting, configurable jwt-attribute-* claim names,
// group managers beyond "paid feature only", emails, login history, locales,
// site-url detection from the first request (site-url defaults to the
// server's own URL instead), query endpoints other than the one streamed
// POST /api/dataset (section 4: chunked, X-Accel-Buffering: no, stopped and
// recorded in Queries when the client goes away), and the real
// frontend: the app page answers 302 to /auth/login itself where Metabase's
// SPA would do it in the browser.
//
// The contract marks some behaviour [inferred]: the text bodies of errors,
// the exact throttle delay, the status codes of unusual admin API requests,
// the password complexity rule (Metabase's default "normal": at least six
// characters, one of them a digit). This server picks one reading of each;
// tests of gatehouse must assert loosely on those (status class, not body),
// as the contract says. Messages and statuses the contract states as [code]
// are reproduced exactly.
package metabasetest
