package oidc

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"golang.org/x/oauth2"
)

// MaxFlowAge is how long a login flow may take, from the redirect to the
// provider until the callback.
const MaxFlowAge = 10 * time.Minute

// Flow is one login in progress: what the callback needs to finish it. It
// travels sealed in a short-lived cookie in the browser that started it
// (security-notes §4.2), so the callback can refuse a state that this
// browser did not start (RFC 9700 §4.7, cross-user session fixation).
type Flow struct {
	// State, Nonce and Verifier (PKCE) are fresh per flow, 256 bits each.
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	// Provider is the configured name of the provider.
	Provider string `json:"p"`
	// ReturnTo is the validated URL to go to after login.
	ReturnTo string `json:"r"`
	// RedirectURL is the callback URL sent in the authorization request;
	// the token request must send the same one.
	RedirectURL string `json:"u"`
	// CreatedAt bounds the flow's age (MaxFlowAge).
	CreatedAt int64 `json:"t"`
}

// NewFlow starts a flow with fresh random state, nonce and PKCE verifier.
func NewFlow(provider, returnTo, redirectURL string, now time.Time) *Flow {
	return &Flow{
		State:       randomString(),
		Nonce:       randomString(),
		Verifier:    oauth2.GenerateVerifier(),
		Provider:    provider,
		ReturnTo:    returnTo,
		RedirectURL: redirectURL,
		CreatedAt:   now.Unix(),
	}
}

// MarshalBinary encodes f for sealing.
func (f *Flow) MarshalBinary() ([]byte, error) { return json.Marshal(f) }

// UnmarshalBinary decodes a sealed flow after it has been opened.
func (f *Flow) UnmarshalBinary(b []byte) error {
	var g Flow
	if err := json.Unmarshal(b, &g); err != nil {
		return errors.New("oidc: invalid flow encoding")
	}
	if g.State == "" || g.Nonce == "" || g.Verifier == "" || g.Provider == "" {
		return errors.New("oidc: incomplete flow")
	}
	*f = g
	return nil
}

// Expired reports whether the flow is older than MaxFlowAge at now (or
// from the future).
func (f *Flow) Expired(now time.Time) bool {
	age := now.Sub(time.Unix(f.CreatedAt, 0))
	return age > MaxFlowAge || age < -time.Minute
}

func randomString() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
