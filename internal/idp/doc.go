// Package idp holds the pieces of gatehouse's built-in OpenID provider: the
// provider's user store (a YAML users file of bcrypt password hashes, see
// [ParseUsers] and [Users.Check]) and the login-failure [Limiter] that sits
// in front of it.
//
// The provider itself will run on the zitadel/oidc op library; this package
// holds only what that library does not provide. It imports no other
// gatehouse package, so it can be tested on its own.
//
// A login handler is expected to use the pieces in this order:
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
package idp
