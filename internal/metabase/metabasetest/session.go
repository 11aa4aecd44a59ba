package metabasetest

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// Login throttling (contract 2.4, metabase/throttle): only failed attempts
// count, within one hour; past the threshold the next attempt must wait a
// delay that starts at 15 s and grows with exponent 1.5 [the exact formula
// is inferred: delay = 15 s × (failures + 1 − threshold)^1.5 since the last
// failure].
const (
	userThrottleThreshold = 10
	ipThrottleThreshold   = 50
	throttleWindow        = time.Hour
	throttleInitialDelay  = 15 * time.Second
	throttleExponent      = 1.5
)

// throttleWaitLocked returns how many seconds the caller must still wait
// before another attempt under key, 0 when it may try now.
func (s *Server) throttleWaitLocked(key string, threshold int) int {
	now := s.now()
	var recent []time.Time
	for _, at := range s.failures[key] {
		if now.Sub(at) < throttleWindow {
			recent = append(recent, at)
		}
	}
	s.failures[key] = recent
	over := len(recent) + 1 - threshold
	if over <= 0 {
		return 0
	}
	delay := time.Duration(float64(throttleInitialDelay) * math.Pow(float64(over), throttleExponent))
	left := delay - now.Sub(recent[len(recent)-1])
	if left <= 0 {
		return 0
	}
	return int(math.Ceil(left.Seconds()))
}

// login serves POST /api/session (2.4).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Remember bool   `json:"remember"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErrors(w, http.StatusBadRequest, "username", "value must be a non-blank string.")
		return
	}
	if strings.TrimSpace(body.Username) == "" {
		writeErrors(w, http.StatusBadRequest, "username", "value must be a non-blank string.")
		return
	}
	if body.Password == "" {
		writeErrors(w, http.StatusBadRequest, "password", "value must be a non-blank string.")
		return
	}
	userKey := "user:" + strings.ToLower(body.Username)
	ipKey := "ip:" + clientIP(r)

	s.mu.Lock()
	wait := max(s.throttleWaitLocked(ipKey, ipThrottleThreshold), s.throttleWaitLocked(userKey, userThrottleThreshold))
	if wait > 0 {
		s.stats.FailedLogins++
		s.mu.Unlock()
		writeErrors(w, http.StatusUnauthorized, "username",
			fmt.Sprintf("Too many attempts! You must wait %d seconds before trying again.", wait))
		return
	}
	u := s.userByEmailLocked(body.Username)
	if u == nil || u.apiKey || u.password != body.Password || !u.active {
		now := s.now()
		s.failures[userKey] = append(s.failures[userKey], now)
		s.failures[ipKey] = append(s.failures[ipKey], now)
		s.stats.FailedLogins++
		s.mu.Unlock()
		if u != nil && !u.apiKey && u.password == body.Password {
			writeErrors(w, http.StatusUnauthorized, "_error", "Your account is disabled.") // [inferred]
			return
		}
		writeErrors(w, http.StatusUnauthorized, "password", "did not match stored password")
		return
	}
	ss := s.newSessionLocked(u, "password")
	s.stats.PasswordLogins++
	s.mu.Unlock()

	s.setLoginCookies(w, r, ss.key, body.Remember)
	writeJSON(w, http.StatusOK, map[string]string{"id": ss.key})
}

// logout serves DELETE /api/session (2.4): 204 and cleared cookies, 404 when
// the request names no session or the session is gone.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	key, ok := sessionKey(r)
	if ok {
		s.mu.Lock()
		_, ok = s.sessions[key]
		if ok {
			delete(s.sessions, key)
			s.stats.SessionDeletions++
		}
		s.mu.Unlock()
	}
	if !ok {
		writeText(w, http.StatusNotFound, "Not found.")
		return
	}
	for _, name := range []string{SessionCookie, "metabase.EMBEDDED_SESSION", TimeoutCookie} {
		// Metabase clears with Expires and Path only (2.4).
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", Expires: time.Unix(0, 0).UTC()}) //nolint:gosec // G124: see above
	}
	w.WriteHeader(http.StatusNoContent)
}

// currentUser serves GET /api/user/current (2.4).
func (s *Server) currentUser(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.callerLocked(r)
	if u == nil {
		writeText(w, http.StatusUnauthorized, "Unauthenticated")
		return
	}
	writeJSON(w, http.StatusOK, s.userJSONLocked(u, true))
}

// properties serves GET /api/session/properties, without auth (2.4).
func (s *Server) properties(w http.ResponseWriter, _ *http.Request) {
	ee := s.opts.Edition == Enterprise
	tag := "v0.65.0"
	if ee {
		tag = "v1.65.0"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"site-url":              s.siteURL.String(),
		"version":               map[string]string{"tag": tag},
		"enable-password-login": true,
		"google-auth-client-id": nil,
		"ldap-enabled":          false,
		"other-sso-enabled?":    ee && s.opts.JWTEnabled && s.opts.JWTSharedSecret != "",
		"token-features":        map[string]bool{"sso_jwt": ee},
		"session-cookies":       nil,
	})
}

// userJSONLocked renders a user the way the user endpoints do (2.4, 3.3).
func (s *Server) userJSONLocked(u *user, full bool) map[string]any {
	m := map[string]any{
		"id":           u.id,
		"email":        u.email,
		"first_name":   nullable(u.firstName),
		"last_name":    nullable(u.lastName),
		"common_name":  strings.TrimSpace(u.firstName + " " + u.lastName),
		"is_superuser": s.isSuperuserLocked(u.id),
		"is_active":    u.active,
		"locale":       nil,
		"last_login":   u.lastLogin,
	}
	if s.opts.Edition == Enterprise {
		m["sso_source"] = nullable(u.ssoSource)
	}
	if full {
		ids := s.groupIDsLocked(u.id)
		m["group_ids"] = ids
		var ms []map[string]any
		for _, id := range ids {
			ms = append(ms, map[string]any{"id": id, "is_group_manager": s.membershipLocked(u.id, id).manager})
		}
		m["user_group_memberships"] = ms
		m["personal_collection_id"] = 1000 + u.id
		m["login_attributes"] = u.loginAttrs
		m["jwt_attributes"] = u.attributes
		m["first_login"] = u.lastLogin
	}
	return m
}

func nullable(v string) any {
	if v == "" {
		return nil
	}
	return v
}
