package metabasetest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Messages of the admin API. Bodies are [inferred] unless the contract
// quotes them.
const (
	msgForbidden    = "You don't have permissions to do that."
	msgAllUsers     = "You cannot add or remove users to/from the 'All Users' group."
	msgEmailInUse   = "Email address already in use." // [code] 3.3
	msgWeakPassword = "Insufficient password strength"
)

// callerHandler is a handler that runs with s.mu held and an authenticated
// caller.
type callerHandler func(w http.ResponseWriter, r *http.Request, caller *user)

// authed authenticates by session or x-api-key (2.1); 401 "Unauthenticated"
// otherwise.
func (s *Server) authed(h callerHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		u := s.callerLocked(r)
		if u == nil {
			writeText(w, http.StatusUnauthorized, "Unauthenticated")
			return
		}
		h(w, r, u)
	}
}

// admin is authed plus superuser (a member of Administrators, which an API
// key in group 2 is; 3.2); 403 otherwise.
func (s *Server) admin(h callerHandler) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request, caller *user) {
		if !s.isSuperuserLocked(caller.id) {
			writeText(w, http.StatusForbidden, msgForbidden)
			return
		}
		h(w, r, caller)
	})
}

func pathID(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id <= 0 {
		writeErrors(w, http.StatusBadRequest, "id", "value must be an integer greater than zero.")
		return 0, false
	}
	return id, true
}

// validPassword is Metabase's default "normal" password complexity: at
// least six characters, one of them a digit [inferred from ms/ValidPassword].
func validPassword(p string) bool {
	return len(p) >= 6 && strings.ContainsFunc(p, unicode.IsDigit)
}

// listUsers serves GET /api/user (3.3). API-key users are hidden.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, _ *user) {
	q := r.URL.Query()
	query := strings.ToLower(q.Get("query"))
	status := q.Get("status")
	groupID, _ := strconv.Atoi(q.Get("group_id"))
	var out []map[string]any
	for _, id := range s.userIDsLocked() {
		u := s.users[id]
		switch {
		case u.apiKey,
			(status == "" || status == "active") && !u.active,
			status == "deactivated" && u.active,
			groupID != 0 && s.membershipLocked(u.id, groupID) == nil,
			query != "" && !strings.Contains(strings.ToLower(u.firstName+"\x00"+u.lastName+"\x00"+u.email), query):
			continue
		}
		out = append(out, s.userJSONLocked(u, true))
	}
	total := len(out)
	var limit, offset any
	if v, err := strconv.Atoi(q.Get("offset")); err == nil && v >= 0 {
		offset = v
		out = out[min(v, len(out)):]
	}
	if v, err := strconv.Atoi(q.Get("limit")); err == nil && v >= 0 {
		limit = v
		out = out[:min(v, len(out))]
	}
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out, "total": total, "limit": limit, "offset": offset})
}

func (s *Server) userIDsLocked() []int {
	ids := make([]int, 0, len(s.users))
	for id := range s.users {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

type groupRef struct {
	ID             int  `json:"id"`
	IsGroupManager bool `json:"is_group_manager"`
}

// createUser serves POST /api/user (3.3).
func (s *Server) createUser(w http.ResponseWriter, r *http.Request, _ *user) {
	var body struct {
		Email           string         `json:"email"`
		FirstName       string         `json:"first_name"`
		LastName        string         `json:"last_name"`
		Password        string         `json:"password"`
		Memberships     []groupRef     `json:"user_group_memberships"`
		LoginAttributes map[string]any `json:"login_attributes"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !strings.Contains(body.Email, "@") {
		writeErrors(w, http.StatusBadRequest, "email", "value must be a valid email address.")
		return
	}
	if s.userByEmailLocked(body.Email) != nil {
		writeErrors(w, http.StatusBadRequest, "email", msgEmailInUse)
		return
	}
	if body.Password != "" && !validPassword(body.Password) {
		writeErrors(w, http.StatusBadRequest, "password", msgWeakPassword)
		return
	}
	u := s.addUserLocked(body.Email, body.FirstName, body.LastName, body.Password)
	u.loginAttrs = body.LoginAttributes
	for _, g := range body.Memberships {
		if _, ok := s.groups[g.ID]; ok {
			s.addMemberLocked(u.id, g.ID)
		}
	}
	writeJSON(w, http.StatusOK, s.userJSONLocked(u, true))
}

// getUser serves GET /api/user/:id: self or admin (3.3).
func (s *Server) getUser(w http.ResponseWriter, r *http.Request, caller *user) {
	u, ok := s.userFromPath(w, r, caller)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.userJSONLocked(u, true))
}

// updateUser serves PUT /api/user/:id (3.3): active users only;
// user_group_memberships replaces the whole set and must keep All Users;
// is_superuser and the list must agree on Administrators; names of SSO users
// cannot change. Group changes need an admin and are ignored otherwise.
func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, caller *user) {
	u, ok := s.userFromPath(w, r, caller)
	if !ok {
		return
	}
	if !u.active {
		writeText(w, http.StatusNotFound, "Not found.")
		return
	}
	isAdmin := s.isSuperuserLocked(caller.id)
	var body struct {
		Email           *string         `json:"email"`
		FirstName       *string         `json:"first_name"`
		LastName        *string         `json:"last_name"`
		IsSuperuser     *bool           `json:"is_superuser"`
		Memberships     *[]groupRef     `json:"user_group_memberships"`
		LoginAttributes *map[string]any `json:"login_attributes"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErrors(w, http.StatusBadRequest, "body", "value must be a map.")
		return
	}
	if body.Email != nil && !strings.EqualFold(*body.Email, u.email) && s.userByEmailLocked(*body.Email) != nil {
		writeErrors(w, http.StatusBadRequest, "email", msgEmailInUse)
		return
	}
	if u.ssoSource != "" && body.FirstName != nil && *body.FirstName != u.firstName {
		writeErrors(w, http.StatusBadRequest, "first_name", "Editing first name is not allowed for SSO users.")
		return
	}
	if u.ssoSource != "" && body.LastName != nil && *body.LastName != u.lastName {
		writeErrors(w, http.StatusBadRequest, "last_name", "Editing last name is not allowed for SSO users.")
		return
	}
	// desired is the new membership set when groups change, nil otherwise.
	var desired map[int]bool
	if isAdmin && body.Memberships != nil {
		desired = map[int]bool{}
		for _, g := range *body.Memberships {
			if _, ok := s.groups[g.ID]; !ok {
				writeErrors(w, http.StatusBadRequest, "user_group_memberships", "group does not exist") // [inferred]
				return
			}
			desired[g.ID] = true
		}
		if !desired[AllUsersGroupID] {
			writeText(w, http.StatusBadRequest, msgAllUsers)
			return
		}
		if body.IsSuperuser != nil && *body.IsSuperuser != desired[AdministratorsGroupID] {
			writeErrors(w, http.StatusBadRequest, "is_superuser", "is_superuser and user_group_memberships disagree on Administrators") // [inferred]
			return
		}
	} else if isAdmin && body.IsSuperuser != nil {
		desired = map[int]bool{}
		for _, gid := range s.groupIDsLocked(u.id) {
			desired[gid] = true
		}
		desired[AdministratorsGroupID] = *body.IsSuperuser
	}
	if desired != nil && !desired[AdministratorsGroupID] && s.isSuperuserLocked(u.id) && s.adminCountLocked() <= 1 {
		writeText(w, http.StatusBadRequest, lastAdminMessage)
		return
	}

	if body.Email != nil {
		u.email = *body.Email
	}
	if body.FirstName != nil {
		u.firstName = *body.FirstName
	}
	if body.LastName != nil {
		u.lastName = *body.LastName
	}
	if body.LoginAttributes != nil {
		u.loginAttrs = *body.LoginAttributes
	}
	if desired != nil {
		for _, gid := range s.groupIDsLocked(u.id) {
			if !desired[gid] {
				_ = s.removeMemberLocked(u.id, gid) // the last admin was refused above
			}
		}
		for gid, in := range desired {
			if in {
				s.addMemberLocked(u.id, gid)
			}
		}
	}
	writeJSON(w, http.StatusOK, s.userJSONLocked(u, true))
}

// setPassword serves PUT /api/user/:id/password (3.3): deletes all the
// user's sessions, and returns a new one only when the caller is the user.
func (s *Server) setPassword(w http.ResponseWriter, r *http.Request, caller *user) {
	u, ok := s.userFromPath(w, r, caller)
	if !ok {
		return
	}
	isAdmin := s.isSuperuserLocked(caller.id)
	var body struct {
		Password    string `json:"password"`
		OldPassword string `json:"old_password"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !validPassword(body.Password) {
		writeErrors(w, http.StatusBadRequest, "password", msgWeakPassword)
		return
	}
	if !isAdmin && body.OldPassword != u.password {
		writeErrors(w, http.StatusBadRequest, "old_password", "Invalid password")
		return
	}
	u.password = body.Password
	s.deleteUserSessionsLocked(u.id)
	if u.id != caller.id {
		w.WriteHeader(http.StatusNoContent) // [inferred]: the endpoint returns nil
		return
	}
	ss := s.newSessionLocked(u, "password")
	s.setLoginCookies(w, r, ss.key, false)
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "session_id": ss.key})
}

// deactivateUser serves DELETE /api/user/:id; sessions are revoked (2.3).
func (s *Server) deactivateUser(w http.ResponseWriter, r *http.Request, _ *user) {
	u, ok := s.userFromPath(w, r, nil)
	if !ok {
		return
	}
	u.active = false
	s.deleteUserSessionsLocked(u.id)
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

// reactivateUser serves PUT /api/user/:id/reactivate: 400 if active, and
// is_superuser is reset to false (3.3).
func (s *Server) reactivateUser(w http.ResponseWriter, r *http.Request, _ *user) {
	u, ok := s.userFromPath(w, r, nil)
	if !ok {
		return
	}
	if u.active {
		writeErrors(w, http.StatusBadRequest, "message", "Not able to reactivate an active user")
		return
	}
	u.active = true
	if m := s.membershipLocked(u.id, AdministratorsGroupID); m != nil {
		delete(s.memberships, m.id)
	}
	writeJSON(w, http.StatusOK, s.userJSONLocked(u, true))
}

// --- groups (3.4) ---

func (s *Server) groupJSONLocked(g *group) map[string]any {
	n := 0
	for _, m := range s.memberships {
		if u := s.users[m.userID]; m.groupID == g.id && u.active && !u.apiKey {
			n++
		}
	}
	return map[string]any{"id": g.id, "name": g.name, "member_count": n}
}

func (s *Server) listGroups(w http.ResponseWriter, _ *http.Request, _ *user) {
	ids := make([]int, 0, len(s.groups))
	for id := range s.groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := []map[string]any{}
	for _, id := range ids {
		out = append(out, s.groupJSONLocked(s.groups[id]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) groupNameFromBody(w http.ResponseWriter, r *http.Request) (string, bool) {
	var body struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || strings.TrimSpace(body.Name) == "" {
		writeErrors(w, http.StatusBadRequest, "name", "value must be a non-blank string.")
		return "", false
	}
	for _, g := range s.groups {
		if g.name == body.Name {
			writeErrors(w, http.StatusBadRequest, "name", "A group with that name already exists.") // [inferred]
			return "", false
		}
	}
	return body.Name, true
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request, _ *user) {
	name, ok := s.groupNameFromBody(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.groupJSONLocked(s.addGroupLocked(name)))
}

// userFromPath returns the user the path's :id names (never an API key's
// hidden user), or answers 404. With a caller, one who is neither that user
// nor an admin gets 403 first (the self-or-admin endpoints; the admin-only
// ones are guarded by their route).
func (s *Server) userFromPath(w http.ResponseWriter, r *http.Request, caller *user) (*user, bool) {
	id, ok := pathID(w, r)
	if !ok {
		return nil, false
	}
	if caller != nil && id != caller.id && !s.isSuperuserLocked(caller.id) {
		writeText(w, http.StatusForbidden, msgForbidden)
		return nil, false
	}
	u, ok := s.users[id]
	if !ok || u.apiKey {
		writeText(w, http.StatusNotFound, "Not found.")
		return nil, false
	}
	return u, true
}

func (s *Server) groupFromPath(w http.ResponseWriter, r *http.Request) (*group, bool) {
	id, ok := pathID(w, r)
	if !ok {
		return nil, false
	}
	g, ok := s.groups[id]
	if !ok {
		writeText(w, http.StatusNotFound, "Not found.")
	}
	return g, ok
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request, _ *user) {
	g, ok := s.groupFromPath(w, r)
	if !ok {
		return
	}
	out := s.groupJSONLocked(g)
	members := []map[string]any{}
	for _, m := range s.membershipsLocked() {
		if u := s.users[m.userID]; m.groupID == g.id && u.active && !u.apiKey {
			members = append(members, map[string]any{"user_id": u.id, "email": u.email, "first_name": nullable(u.firstName),
				"last_name": nullable(u.lastName), "membership_id": m.id, "is_group_manager": m.manager})
		}
	}
	out["members"] = members
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) renameGroup(w http.ResponseWriter, r *http.Request, _ *user) {
	g, ok := s.groupFromPath(w, r)
	if !ok {
		return
	}
	if g.id == AllUsersGroupID || g.id == AdministratorsGroupID {
		writeText(w, http.StatusBadRequest, "You cannot edit or delete the 'All Users' or 'Administrators' group.") // [inferred]
		return
	}
	name, ok := s.groupNameFromBody(w, r)
	if !ok {
		return
	}
	g.name = name
	writeJSON(w, http.StatusOK, s.groupJSONLocked(g))
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request, _ *user) {
	g, ok := s.groupFromPath(w, r)
	if !ok {
		return
	}
	if g.id == AllUsersGroupID || g.id == AdministratorsGroupID {
		writeText(w, http.StatusBadRequest, "You cannot edit or delete the 'All Users' or 'Administrators' group.") // [inferred]
		return
	}
	for id, m := range s.memberships {
		if m.groupID == g.id {
			delete(s.memberships, id)
		}
	}
	delete(s.groups, g.id)
	w.WriteHeader(http.StatusNoContent)
}

// --- memberships (3.4) ---

func (s *Server) membershipsLocked() []*membership {
	out := make([]*membership, 0, len(s.memberships))
	for _, m := range s.memberships {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *membership) int { return a.id - b.id })
	return out
}

func membershipJSON(m *membership) map[string]any {
	return map[string]any{"membership_id": m.id, "group_id": m.groupID, "user_id": m.userID, "is_group_manager": m.manager}
}

func (s *Server) listMemberships(w http.ResponseWriter, _ *http.Request, _ *user) {
	out := map[string][]map[string]any{}
	for _, m := range s.membershipsLocked() {
		k := strconv.Itoa(m.userID)
		out[k] = append(out[k], membershipJSON(m))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addMembership(w http.ResponseWriter, r *http.Request, _ *user) {
	var body struct {
		GroupID        int  `json:"group_id"`
		UserID         int  `json:"user_id"`
		IsGroupManager bool `json:"is_group_manager"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErrors(w, http.StatusBadRequest, "group_id", "value must be an integer greater than zero.")
		return
	}
	if body.IsGroupManager && s.opts.Edition != Enterprise {
		writeText(w, http.StatusPaymentRequired, "Group managers are a paid feature.") // [inferred] body
		return
	}
	if body.GroupID == AllUsersGroupID {
		writeText(w, http.StatusBadRequest, msgAllUsers)
		return
	}
	_, gok := s.groups[body.GroupID]
	u, uok := s.users[body.UserID]
	if !gok || !uok || u.apiKey {
		writeText(w, http.StatusNotFound, "Not found.")
		return
	}
	if s.membershipLocked(u.id, body.GroupID) != nil {
		writeText(w, http.StatusBadRequest, "User is already a member of this group.") // [inferred]
		return
	}
	s.addMemberLocked(u.id, body.GroupID).manager = body.IsGroupManager
	out := []map[string]any{}
	for _, m := range s.membershipsLocked() {
		if m.groupID == body.GroupID {
			out = append(out, membershipJSON(m))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) updateMembership(w http.ResponseWriter, r *http.Request, _ *user) {
	if s.opts.Edition != Enterprise {
		writeText(w, http.StatusPaymentRequired, "Group managers are a paid feature.") // [inferred] body
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	m, ok := s.memberships[id]
	if !ok {
		writeText(w, http.StatusNotFound, "Not found.")
		return
	}
	var body struct {
		IsGroupManager bool `json:"is_group_manager"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErrors(w, http.StatusBadRequest, "is_group_manager", "value must be a boolean.")
		return
	}
	m.manager = body.IsGroupManager
	writeJSON(w, http.StatusOK, membershipJSON(m))
}

func (s *Server) deleteMembership(w http.ResponseWriter, r *http.Request, _ *user) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	m, ok := s.memberships[id]
	if !ok {
		writeText(w, http.StatusNotFound, "Not found.")
		return
	}
	if m.groupID == AllUsersGroupID {
		writeText(w, http.StatusBadRequest, msgAllUsers)
		return
	}
	if err := s.removeMemberLocked(m.userID, m.groupID); err != nil {
		writeText(w, http.StatusBadRequest, lastAdminMessage)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) clearGroup(w http.ResponseWriter, r *http.Request, _ *user) {
	g, ok := s.groupFromPath(w, r)
	if !ok {
		return
	}
	if g.id == AllUsersGroupID || g.id == AdministratorsGroupID {
		writeText(w, http.StatusBadRequest, "You cannot clear the members of this group.") // [inferred] body
		return
	}
	for id, m := range s.memberships {
		if m.groupID == g.id {
			delete(s.memberships, id)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
