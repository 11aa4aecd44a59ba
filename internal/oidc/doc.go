// Package oidc is gatehouse's OpenID Connect relying party: login,
// callback, refresh, logout and back-channel logout.
//
// It currently holds only the return_to validation ([ReturnTo]), which
// decides where a user may be sent after login without turning gatehouse
// into an open redirector (RFC 9700 §4.11, ASVS 3.7.2).
package oidc
