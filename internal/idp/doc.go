// Package idp is gatehouse's built-in OpenID provider: a users file of
// bcrypt password hashes ([ParseUsers], [Users.Check]), a login-failure
// [Limiter], and the [Provider] that serves OpenID Connect on top of them,
// built on the zitadel/oidc op library (an OpenID Certified provider
// library). gatehouse's relying party signs users in through it exactly
// as through any external provider.
//
// # Mounting
//
// The provider is an http.Handler and binds no address itself. gatehouse
// routes every request whose path starts with the issuer's path (say
// /.gatehouse/idp for issuer http://127.0.0.1:8080/.gatehouse/idp) to
// [Provider.ServeHTTP], with the full, unstripped path. Below the issuer:
//
//	/.well-known/openid-configuration  discovery; "issuer" is exactly ProviderOptions.Issuer
//	/keys                              JWKS: the current RS256 key and the previous one
//	/authorize                         authorization endpoint: response_type=code only,
//	                                   PKCE with S256 required ("plain" and no PKCE are
//	                                   refused), scope openid required, state and nonce
//	                                   passed through, response_mode query, prompt=none
//	                                   answers login_required (there is no SSO session)
//	/login                             the login form (GET) and its POST
//	/oauth/token                       authorization_code and refresh_token grants;
//	                                   client_secret_basic or client_secret_post
//	/userinfo                          the ID token's user claims, for an access token
//	/revoke                            RFC 7009 revocation of access and refresh tokens
//	/end_session                       RP-initiated logout
//	/logged-out                        where end_session lands without a valid
//	                                   post_logout_redirect_uri
//
// Everything else answers 404, including op's /authorize/callback, its
// introspection and device endpoints: the login handler issues the code
// itself, so an auth request ID alone never yields one.
//
// # Tokens and claims
//
// Scopes: openid, email, profile, groups, offline_access. The ID token
// (RS256, typ JWT, kid of the current key) carries iss, aud (the client
// ID, as an array), azp, sub ([User.Subject], stable per username), iat,
// exp, auth_time, amr ["pwd"], nonce (code flow only), at_hash, sid (a
// random ID per login: the OP session) and, as the scopes ask, email and
// email_verified (true), name and preferred_username (the username), and
// groups (an array, possibly empty). Userinfo returns the same user claims
// without sid. Access tokens are opaque. A refresh token is issued when
// offline_access is asked for; every refresh rotates it, and presenting a
// rotated refresh token (or a redeemed code) again revokes every token of
// that login. Refreshed ID tokens are built from the users file as it is
// at the refresh, so a reload ([Provider.SetUsers]) reaches relying
// parties within one ID token lifetime, and a removed user's refresh fails
// with invalid_grant.
//
// # Logout
//
// [Provider.EndSessions] and the end_session endpoint (with an
// id_token_hint: the hint's sid names the session to end) delete the OP
// sessions, their refresh and access tokens and any login not yet
// redeemed, then POST a logout token (OpenID Connect Back-Channel Logout
// 1.0) to the BackchannelLogoutURI of every client the user signed in to
// in those sessions: a JWT signed with the current key, header typ
// "logout+jwt", claims iss, aud (the client ID), iat, exp (2 minutes), jti,
// events {"http://schemas.openid.net/event/backchannel-logout": {}}, sub
// and sid, and no nonce. end_session redirects to post_logout_redirect_uri
// (with state) only if it is registered for the client named by the hint
// or client_id; an unregistered one is refused with 400, and one without
// a client to check it against is ignored.
//
// # The login page
//
// A small HTML form (username, password and the opaque auth request ID)
// without external assets, served with Cache-Control: no-store,
// Referrer-Policy: no-referrer, X-Frame-Options: DENY and a
// Content-Security-Policy that allows only its own inline style (by hash),
// no framing, and form posts to the provider and the client's redirect
// origin. Showing the form binds the auth request to a per-request,
// HttpOnly, SameSite=Strict cookie; a POST without that cookie, for an
// expired or finished request, or marked cross-site by Sec-Fetch-Site is
// refused. A wrong username or password re-renders the form with one
// generic message (401); attempts are limited per username and client
// address by the [Limiter] (429 with Retry-After). The pieces are used in
// this order:
//
//	ok, retry := limiter.Allow(username, clientIP)
//	if !ok {
//		// 429 with Retry-After: retry; do not call Check.
//	}
//	u, err := users.Check(username, password)
//	if err != nil {
//		limiter.Failure(username, clientIP)
//		// one generic "invalid username or password" message
//	} else {
//		limiter.Success(username, clientIP)
//	}
//
// # What is in memory
//
// Everything: the signing keys (a new RSA key at every start;
// [Provider.RotateKey] adds one and keeps the previous one published),
// pending logins (10 minutes), codes (1 minute, single use), access
// tokens, refresh tokens and OP sessions, each pruned when it expires.
// Pending logins are capped (10000). A restart therefore ends every OP
// session and refresh token: relying parties must send users through the
// login again and refetch the JWKS on an unknown kid.
//
// Nothing secret is logged: not passwords, not the typed username of a
// failed login, not codes, tokens or client secrets. The op library itself
// logs request errors to slog.Default.
//
// The package imports no other gatehouse package except internal/fileerr,
// so it can be tested on its own.
package idp
