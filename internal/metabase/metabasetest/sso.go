package metabasetest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// Messages of the JWT flow (contract 1.3, 1.4, 1.8).
const (
	msgCorrupt          = "Message seems corrupt or manipulated"
	msgNotEnabled       = "JWT authentication is not enabled"
	msgMissingEmail     = "JWT token missing email claim"
	msgNoAccount        = "Sorry, but you'll need a Metabase account to view this page. Please contact your administrator."
	msgInvalidRedirect  = "Invalid redirect URL"
	msgTooOld           = "Token is older than max-age (180)"
	msgFeatureMissing   = "SSO has not been enabled and/or configured" // [inferred] the 402 body
	maxTokenAge         = 180                                          // buddy-sign :max-age, seconds
	embeddingSDKClient  = "embedding-sdk-react"
	embeddingSimpleName = "embedding-simple"
)

// notJWTAttributes are the claims that never become user attributes (1.4).
var notJWTAttributes = map[string]bool{
	"iss": true, "iat": true, "sub": true, "aud": true, "exp": true, "nbf": true, "jti": true,
	"email": true, "first_name": true, "last_name": true, "groups": true, "@tenant": true,
}

// verifyJWT checks a token the way buddy-sign's jwt/unsign with
// {:max-age 180} does (1.2, 1.3): always HMAC-SHA256 over the secret's UTF-8
// bytes whatever the header's alg says, then exp (no leeway), nbf and the
// iat age. It returns the claims, or the message of the 401.
func (s *Server) verifyJWT(token string) (map[string]any, string) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, msgCorrupt
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	var header map[string]any
	if err != nil || json.Unmarshal(hdr, &header) != nil {
		return nil, msgCorrupt
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, msgCorrupt
	}
	mac := hmac.New(sha256.New, []byte(s.opts.JWTSharedSecret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, msgCorrupt
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, msgCorrupt + "."
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, msgCorrupt + "."
	}
	now := float64(s.now().Unix())
	if v, ok := claims["exp"]; ok {
		exp, ok := number(v)
		if !ok {
			return nil, msgCorrupt
		}
		if exp <= now {
			return nil, "Token is expired (" + numberText(v) + ")"
		}
	}
	if v, ok := claims["nbf"]; ok {
		nbf, ok := number(v)
		if !ok {
			return nil, msgCorrupt
		}
		if nbf > now {
			return nil, "Token is not yet valid (" + numberText(v) + ")"
		}
	}
	if v, ok := claims["iat"]; ok {
		iat, ok := number(v)
		if !ok {
			return nil, msgCorrupt
		}
		if now-iat > maxTokenAge {
			return nil, msgTooOld
		}
	}
	return claims, ""
}

func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

func numberText(v any) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return ""
}

// sso serves GET /auth/sso (1.1 to 1.9).
func (s *Server) sso(w http.ResponseWriter, r *http.Request) {
	if s.opts.Edition != Enterprise {
		writeText(w, http.StatusPaymentRequired, msgFeatureMissing)
		return
	}
	if !s.opts.JWTEnabled || s.opts.JWTSharedSecret == "" {
		writeText(w, http.StatusUnauthorized, msgNotEnabled)
		return
	}
	q := r.URL.Query()
	client := r.Header.Get("X-Metabase-Client")
	jsonMode := client == embeddingSDKClient || client == embeddingSimpleName
	if jsonMode && !s.opts.EmbeddingSDKEnabled {
		status := "error-embedding-sdk-disabled"
		if client == embeddingSimpleName {
			status = "error-embedding-simple-disabled"
		}
		writeJSON(w, http.StatusPaymentRequired, map[string]string{"status": status, "message": "SDK Embedding is not enabled."})
		return
	}
	if !q.Has("jwt") {
		idp := s.opts.JWTIdentityProviderURI
		if jsonMode {
			writeJSON(w, http.StatusOK, map[string]string{"url": idp, "method": "jwt"})
			return
		}
		if idp == "" {
			writeText(w, http.StatusBadRequest, "JWT identity provider URI is not set") // [inferred]
			return
		}
		target := idp
		if redirect := q.Get("redirect"); redirect != "" {
			sep := "?"
			if strings.Contains(idp, "?") {
				sep = "&"
			}
			// redirect is not URL-encoded again (1.1).
			target += sep + "return_to=" + redirect
		}
		w.Header().Set("Location", target)
		w.WriteHeader(http.StatusFound)
		return
	}
	claims, msg := s.verifyJWT(q.Get("jwt"))
	if msg != "" {
		writeText(w, http.StatusUnauthorized, msg)
		return
	}
	email, _ := claims["email"].(string)
	if email == "" {
		writeText(w, http.StatusUnauthorized, msgMissingEmail)
		return
	}
	returnTo := "/"
	if q.Has("return_to") {
		returnTo = q.Get("return_to")
	}
	if !s.redirectAllowed(returnTo) {
		writeText(w, http.StatusBadRequest, msgInvalidRedirect)
		return
	}

	s.mu.Lock()
	u := s.userByEmailLocked(email)
	provisioning := !s.opts.JWTProvisioningDisabled
	switch {
	case u == nil && !provisioning, u != nil && !u.active && !provisioning:
		s.mu.Unlock()
		writeText(w, http.StatusUnauthorized, msgNoAccount)
		return
	case u == nil:
		u = s.addUserLocked(email, "", "", "")
	case !u.active:
		u.active = true // 1.4: provisioning reactivates a deactivated user.
	}
	if v, ok := claims["first_name"].(string); ok {
		u.firstName = v
	}
	if v, ok := claims["last_name"].(string); ok {
		u.lastName = v
	}
	u.ssoSource = "jwt"
	u.attributes = jwtAttributes(claims)
	if raw, ok := claims["groups"]; ok && s.opts.JWTGroupSync {
		if names, ok := raw.([]any); ok {
			s.syncGroupsLocked(u, names)
		}
	}
	ss := s.newSessionLocked(u, "sso")
	s.stats.SSOLogins++
	s.mu.Unlock()

	if jsonMode {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "id": ss.key, "exp": claims["exp"], "iat": claims["iat"]})
		return
	}
	s.setLoginCookies(w, r, ss.key, false)
	// ring.util.response/redirect: Location is return_to exactly as given.
	w.Header().Set("Location", returnTo)
	w.WriteHeader(http.StatusFound)
}

// ssoPost serves POST /auth/sso: with JWT as the backend it is an error,
// rendered as HTML, 501 in the newest code (1.1).
func (s *Server) ssoPost(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Edition != Enterprise {
		writeText(w, http.StatusPaymentRequired, msgFeatureMissing)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusNotImplemented)
	_, _ = w.Write([]byte("<html><body><p>" + html.EscapeString("POST not valid for JWT SSO requests") + "</p></body></html>"))
}

// redirectAllowed is check-sso-redirect (1.5): relative (no scheme and no
// host), or the host of site-url. A value java.net.URI cannot parse is
// rejected; Go's parser is laxer, so the characters Java refuses are checked
// first [inferred approximation].
func (s *Server) redirectAllowed(v string) bool {
	if strings.ContainsFunc(v, func(c rune) bool {
		return unicode.IsSpace(c) || unicode.IsControl(c) || strings.ContainsRune("\\\"<>^`{|}", c)
	}) {
		return false
	}
	u, err := url.Parse(v)
	if err != nil {
		return false
	}
	if u.Scheme == "" && u.Host == "" {
		return true
	}
	return u.Hostname() == s.siteURL.Hostname()
}

// jwtAttributes keeps the scalar claims that are not registered or mapped
// claims, stringified (1.4). Arrays, maps and nulls are dropped.
func jwtAttributes(claims map[string]any) map[string]string {
	attrs := map[string]string{}
	for k, v := range claims {
		if notJWTAttributes[k] {
			continue
		}
		switch v := v.(type) {
		case string:
			attrs[k] = v
		case json.Number:
			attrs[k] = v.String()
		case bool:
			attrs[k] = strconv.FormatBool(v)
		}
	}
	return attrs
}

// syncGroupsLocked is sync-group-memberships! after a JWT login (1.6).
// Non-string entries of the groups claim are ignored. All Users is never
// touched, failed adds are skipped, and the last admin stays admin.
func (s *Server) syncGroupsLocked(u *user, raw []any) {
	var names []string
	for _, v := range raw {
		if n, ok := v.(string); ok {
			names = append(names, n)
		}
	}
	target, managed := map[int]bool{}, map[int]bool{}
	if len(s.opts.JWTGroupMappings) > 0 {
		// Case 1: only groups that appear in some mapping are managed.
		for _, n := range names {
			for _, id := range s.opts.JWTGroupMappings[n] {
				target[id] = true
			}
		}
		for _, ids := range s.opts.JWTGroupMappings {
			for _, id := range ids {
				managed[id] = true
			}
		}
	} else {
		// Case 2: exact names; every group is managed, Administrators included.
		for _, g := range s.groups {
			managed[g.id] = true
			for _, n := range names {
				if g.name == n {
					target[g.id] = true
				}
			}
		}
	}
	delete(target, AllUsersGroupID)
	delete(managed, AllUsersGroupID)
	for _, gid := range s.groupIDsLocked(u.id) {
		if managed[gid] && !target[gid] {
			_ = s.removeMemberLocked(u.id, gid) // errLastAdmin: logged and kept in Metabase.
		}
	}
	for gid := range target {
		if _, ok := s.groups[gid]; ok {
			s.addMemberLocked(u.id, gid)
		}
	}
}
