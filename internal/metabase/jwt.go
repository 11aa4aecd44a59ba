package metabase

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// SSOTokenTTL is the lifetime of a minted SSO token: exp = iat + 60 s, the
// contract's ceiling (1.3, 6.9). Metabase applies no leeway to exp and
// refuses an iat older than 180 s, so clocks must agree within a minute.
const SSOTokenTTL = 60 * time.Second

// User is the person a JWT SSO token signs in (contract 1.4).
type User struct {
	// Email is required; Metabase finds users by it, case-insensitively.
	Email string
	// FirstName and LastName are sent when not empty. When both are empty
	// they are derived from DisplayName by SplitName.
	FirstName, LastName string
	// DisplayName is the IdP's full name, used only to derive missing names.
	DisplayName string
	// Groups become the groups claim, an array of strings. Nil omits the
	// claim, and Metabase leaves the memberships alone; an empty, non-nil
	// slice sends [], which with jwt-group-sync on and no mappings removes
	// the user from every group but All Users, Administrators included
	// (1.6). Empty names are dropped and duplicates sent once.
	Groups []string
}

// ssoClaims are exactly the claims of contract section 0.A.2: nothing
// else, so no stray claim becomes a Metabase user attribute (1.4).
type ssoClaims struct {
	Email     string    `json:"email"`
	FirstName string    `json:"first_name,omitempty"`
	LastName  string    `json:"last_name,omitempty"`
	Groups    *[]string `json:"groups,omitempty"`
	IssuedAt  int64     `json:"iat"`
	Expiry    int64     `json:"exp"`
}

// SplitName derives Metabase's first and last names from a display name:
// runs of white space collapse to one space; the last word is the last name
// and everything before it the first name ("Ana Maria Lima" → "Ana Maria",
// "Lima"); a single word is a first name only ("Prince" → "Prince", "").
// An empty name gives two empty strings. Metabase does not require names
// (1.4); an empty one is simply not sent, so Metabase keeps what it has.
func SplitName(display string) (first, last string) {
	words := strings.Fields(display)
	switch len(words) {
	case 0:
		return "", ""
	case 1:
		return words[0], ""
	}
	return strings.Join(words[:len(words)-1], " "), words[len(words)-1]
}

// MintSSOToken returns a compact HS256 JWT for GET /auth/sso (contract 1.2,
// 1.3, 6.9): the claims email, first_name and last_name (when known),
// groups (when u.Groups is not nil), iat = now and exp = now + 60 s. The
// key is secret's raw bytes, which must be the UTF-8 bytes of Metabase's
// jwt-shared-secret exactly as configured: Metabase does not hex-decode
// it. The token is a credential; never log it.
func MintSSOToken(u User, secret []byte, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("metabase: minting sso token: empty shared secret")
	}
	email := strings.TrimSpace(u.Email)
	if email == "" || strings.ContainsAny(email, " \t\r\n") || !strings.Contains(email, "@") {
		return "", errors.New("metabase: minting sso token: user has no valid email")
	}
	first, last := strings.TrimSpace(u.FirstName), strings.TrimSpace(u.LastName)
	if first == "" && last == "" {
		first, last = SplitName(u.DisplayName)
	}
	c := ssoClaims{Email: email, FirstName: first, LastName: last,
		IssuedAt: now.Unix(), Expiry: now.Add(SSOTokenTTL).Unix()}
	if u.Groups != nil {
		groups := make([]string, 0, len(u.Groups))
		seen := map[string]bool{}
		for _, g := range u.Groups {
			if g != "" && !seen[g] {
				seen[g] = true
				groups = append(groups, g)
			}
		}
		c.Groups = &groups
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", errors.New("metabase: minting sso token: encoding claims")
	}
	// Metabase ignores the header's alg and always verifies HS256 (1.2).
	input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}
