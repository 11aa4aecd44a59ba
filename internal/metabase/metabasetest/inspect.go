package metabasetest

import (
	"fmt"
	"slices"
)

// User is a snapshot of a Metabase user, for assertions.
type User struct {
	ID         int
	Email      string
	FirstName  string
	LastName   string
	Password   string
	Active     bool
	Superuser  bool
	SSOSource  string
	GroupIDs   []int    // sorted, All Users included
	GroupNames []string // sorted
	Attributes map[string]string
}

// NewUser describes a user to seed with AddUser.
type NewUser struct {
	Email     string
	FirstName string
	LastName  string
	// Password defaults to a random one.
	Password string
	// GroupIDs are added to All Users.
	GroupIDs []int
}

// AddUser creates a user as an admin would. It panics on a duplicate email
// or an unknown group, which are test bugs.
func (s *Server) AddUser(nu NewUser) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.userByEmailLocked(nu.Email) != nil {
		panic(fmt.Sprintf("metabasetest: AddUser: %s exists", nu.Email))
	}
	u := s.addUserLocked(nu.Email, nu.FirstName, nu.LastName, nu.Password)
	for _, gid := range nu.GroupIDs {
		if _, ok := s.groups[gid]; !ok {
			panic(fmt.Sprintf("metabasetest: AddUser: no group %d", gid))
		}
		s.addMemberLocked(u.id, gid)
	}
	return s.snapshotLocked(u)
}

// AddGroup creates a group and returns its id.
func (s *Server) AddGroup(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addGroupLocked(name).id
}

// User returns the user with this email (case-insensitive).
func (s *Server) User(email string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByEmailLocked(email)
	if u == nil {
		return User{}, false
	}
	return s.snapshotLocked(u), true
}

// Users returns every user but the hidden API-key users, by id.
func (s *Server) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []User
	for _, id := range s.userIDsLocked() {
		if u := s.users[id]; !u.apiKey {
			out = append(out, s.snapshotLocked(u))
		}
	}
	return out
}

// Sessions returns the live session keys of the user with this email.
func (s *Server) Sessions(email string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByEmailLocked(email)
	if u == nil {
		return nil
	}
	var keys []string
	for k, ss := range s.sessions {
		if _, live := s.liveSessionLocked(k); live && ss.userID == u.id {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// ChangePasswordOutOfBand sets a user's password the way "forgot password"
// does (section 0B): gatehouse's copy goes stale and, as with every password
// change, all the user's sessions are deleted (2.3).
func (s *Server) ChangePasswordOutOfBand(email, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByEmailLocked(email)
	if u == nil {
		return fmt.Errorf("metabasetest: no user %s", email)
	}
	u.password = password
	s.deleteUserSessionsLocked(u.id)
	return nil
}

// SetInitializing makes the server act as a starting Metabase: /api/health
// answers 503 {"status":"initializing",…} and every other /api/* call 503
// (2.4). SetInitializing(false) finishes start-up.
func (s *Server) SetInitializing(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initializing = v
}

func (s *Server) snapshotLocked(u *user) User {
	out := User{ID: u.id, Email: u.email, FirstName: u.firstName, LastName: u.lastName, Password: u.password,
		Active: u.active, Superuser: s.isSuperuserLocked(u.id), SSOSource: u.ssoSource,
		GroupIDs: s.groupIDsLocked(u.id), Attributes: map[string]string{}}
	for _, gid := range out.GroupIDs {
		out.GroupNames = append(out.GroupNames, s.groups[gid].name)
	}
	slices.Sort(out.GroupNames)
	for k, v := range u.attributes {
		out.Attributes[k] = v
	}
	return out
}
