// Package metabase is gatehouse's server-side Metabase client: it signs
// users in to Metabase on the back channel, in one of two modes, and manages
// their accounts through the admin API. It follows
// ../shared/metabase-contract.md (the "contract"; section numbers below
// refer to it), and it is tested against the metabasetest double.
//
// # JWT SSO (Metabase Pro/Enterprise, mode jwt)
//
// MintSSOToken makes the HS256 token of contract 1.2 to 1.4: exactly the
// claims email, first_name, last_name, groups, iat and exp (iat + 60 s),
// keyed with the raw UTF-8 bytes of Metabase's jwt-shared-secret.
// Client.SSOSession sends it to GET /auth/sso?jwt=…&return_to=/ without
// following the 302 and returns the metabase.SESSION it sets. Metabase
// creates unknown users, reactivates deactivated ones (provisioning on,
// 6.13) and syncs groups at that login only (1.6, 6.12); with no
// jwt-group-mappings it matches groups by name and removes the user from
// every group not in the claim, Administrators included.
//
// # Credential broker (free edition, mode broker)
//
// Metabase OSS has no header or pre-authenticated mode (0.B). Broker holds
// an admin API key and gives each user a password only gatehouse knows,
// derived from a broker key and the user's (issuer, subject): SignIn finds
// or creates the account, syncs the groups named in its GroupMap (All Users
// always kept, unmanaged groups untouched), and signs in with POST
// /api/session. When the password no longer matches (the user used "forgot
// password"), it resets it and retries once. Deprovision deactivates.
//
// # Client
//
// Client wraps one Metabase: it never follows redirects, keeps no cookie
// jar, sends session keys as X-Metabase-Session and the admin key as
// x-api-key. WithRequestInfo passes the browser's IP (X-Forwarded-For, for
// Metabase's per-IP login throttle) and metabase.DEVICE. Every failure is an
// *Error wrapping a sentinel (ErrThrottled, ErrBadCredentials, …) whose text
// never contains a session key, API key, JWT or password.
//
// # What it does not do
//
// It does not bind Metabase sessions to gatehouse sessions, store them,
// refresh them, or delete superseded ones on its own; it never touches an
// inbound HTTP request or response: setting the metabase.SESSION cookie or
// injecting X-Metabase-Session (and stripping the browser's cookie, which
// would win, 2.1), calling Logout when the gatehouse session ends (6.11),
// and re-running SSOSession or SignIn when groups may have changed are the
// caller's job. It does not manage Metabase settings, API keys, SCIM, SAML,
// LDAP or Google Sign-In, and it does not create groups.
package metabase
