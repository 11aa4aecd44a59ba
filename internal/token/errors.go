package token

import (
	"context"
	"errors"
)

// Sentinel errors. Every error [Verifier.Verify] returns wraps exactly one of
// them, so callers branch with errors.Is and audit with [Reason]. Messages are
// fixed strings plus, at most, configuration values (a JWKS URL, a limit): no
// error ever repeats the token or any part of it (header, payload, signature,
// kid, iss, alg), because error text ends up in logs.
var (
	// ErrTooLarge: the token is longer than Options.MaxTokenBytes. Checked
	// before anything else looks at the token.
	ErrTooLarge = errors.New("token too large")
	// ErrMalformed: not a canonical JWS compact serialization
	// (header.payload.signature in base64url), or a header or payload that is
	// not a strict JSON object (duplicate keys, wrong claim types).
	ErrMalformed = errors.New("token malformed")
	// ErrHeader: the JOSE header carries a parameter gatehouse refuses outright
	// (jwk, jku, x5u, x5c, crit, b64, enc, zip) or a kid that is too long.
	ErrHeader = errors.New("token header not accepted")
	// ErrAlgorithm: the header alg is not pinned for the token's issuer
	// (this includes none and every HS* algorithm, which are never pinned).
	ErrAlgorithm = errors.New("token algorithm not accepted")
	// ErrTokenType: the token is not an access token: an ID token, a logout
	// token, another typ, or an assertion from an issuer in
	// Options.RejectIssuers (gatehouse's own).
	ErrTokenType = errors.New("token type not accepted")
	// ErrIssuer: iss is not exactly one of the configured issuers.
	ErrIssuer = errors.New("token issuer not accepted")
	// ErrUnknownKey: the issuer's JWKS has no key for the token's kid that
	// accepts its algorithm, even after the refetch the floor allows.
	ErrUnknownKey = errors.New("token signing key unknown")
	// ErrJWKSUnavailable: the issuer's JWKS could not be fetched and no key set
	// is cached. Verification fails closed.
	ErrJWKSUnavailable = errors.New("JWKS unavailable")
	// ErrSignature: the signature does not verify with the selected key.
	ErrSignature = errors.New("token signature invalid")
	// ErrMissingClaim: a required claim (iss, sub, aud, exp, iat) is absent.
	ErrMissingClaim = errors.New("token claim missing")
	// ErrExpired: exp is more than the leeway in the past, or iat is older
	// than Options.MaxAge.
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: nbf or iat is more than the leeway in the future.
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrAudience: aud contains none of the issuer's configured audiences.
	ErrAudience = errors.New("token audience not accepted")
)

// Audit reasons returned by [Reason]. They are stable, kebab-case, and name the
// check that failed; the audit record carries them, never the token.
const (
	ReasonTooLarge        = "token-too-large"
	ReasonMalformed       = "token-malformed"
	ReasonHeader          = "token-forbidden-header"
	ReasonAlgorithm       = "token-algorithm"
	ReasonTokenType       = "token-type"
	ReasonIssuer          = "token-issuer"
	ReasonUnknownKey      = "token-unknown-key"
	ReasonJWKSUnavailable = "jwks-unavailable"
	ReasonSignature       = "token-signature"
	ReasonMissingClaim    = "token-missing-claim"
	ReasonExpired         = "token-expired"
	ReasonNotYetValid     = "token-not-yet-valid"
	ReasonAudience        = "token-audience"
	// ReasonInvalid is the catch-all for an error that wraps no sentinel of
	// this package; Verify does not return such errors.
	ReasonInvalid = "token-invalid"
)

var reasons = []struct {
	err    error
	reason string
}{
	{ErrTooLarge, ReasonTooLarge},
	{ErrMalformed, ReasonMalformed},
	{ErrHeader, ReasonHeader},
	{ErrAlgorithm, ReasonAlgorithm},
	{ErrTokenType, ReasonTokenType},
	{ErrIssuer, ReasonIssuer},
	{ErrUnknownKey, ReasonUnknownKey},
	{ErrJWKSUnavailable, ReasonJWKSUnavailable},
	{ErrSignature, ReasonSignature},
	{ErrMissingClaim, ReasonMissingClaim},
	{ErrExpired, ReasonExpired},
	{ErrNotYetValid, ReasonNotYetValid},
	{ErrAudience, ReasonAudience},
	// A caller that gave up while a JWKS fetch was in flight.
	{context.Canceled, ReasonJWKSUnavailable},
	{context.DeadlineExceeded, ReasonJWKSUnavailable},
}

// Reason maps an error from [Verifier.Verify] to its audit reason: "" for nil,
// one of the Reason* constants otherwise.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ReasonInvalid
}
