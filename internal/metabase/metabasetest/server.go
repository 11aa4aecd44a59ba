package metabasetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Edition selects which Metabase the server plays.
type Edition int

const (
	// OSS is the free edition: no sso-jwt feature, so /auth/sso answers 402
	// (contract 1.1) and group managers are a paid feature (3.4).
	OSS Edition = iota
	// Enterprise is Metabase Pro/Enterprise with the sso-jwt feature.
	Enterprise
)

// Default group ids (contract 1.6).
const (
	AllUsersGroupID       = 1
	AdministratorsGroupID = 2
)

// The setup admin every Metabase has after its first-run setup. It is user
// 1 and a member of Administrators.
const (
	SetupAdminEmail    = "admin@metabase.test"
	SetupAdminPassword = "setup-admin-1"
)

// Cookie names (contract 2.1).
const (
	SessionCookie = "metabase.SESSION"
	TimeoutCookie = "metabase.TIMEOUT"
	DeviceCookie  = "metabase.DEVICE"
)

// DefaultMaxSessionAge is MAX_SESSION_AGE's default, 20160 minutes (2.3).
const DefaultMaxSessionAge = 14 * 24 * time.Hour

// APIKey is an API key (contract 3.2). Metabase creates a hidden user for
// each key, in All Users plus GroupID; a key in Administrators is a
// superuser for the admin API.
type APIKey struct {
	// Name is the key's name; it appears in nothing but the hidden user.
	Name string
	// Key is the value clients send as x-api-key, "mb_" plus base64 in Metabase.
	Key string
	// GroupID is the key's group: AdministratorsGroupID for an admin key,
	// AllUsersGroupID (or 0) for a key without admin rights.
	GroupID int
}

// Options configure a Server. The zero value is an OSS Metabase without JWT.
type Options struct {
	// Edition is OSS (default) or Enterprise (with the sso-jwt feature).
	Edition Edition
	// JWTEnabled is the stored jwt-enabled setting. JWT SSO is on only when it
	// is true and JWTSharedSecret is not empty (1.1).
	JWTEnabled bool
	// JWTSharedSecret is jwt-shared-secret, used as its raw UTF-8 bytes (1.2).
	JWTSharedSecret string
	// JWTIdentityProviderURI is jwt-identity-provider-uri, where GET /auth/sso
	// without a jwt redirects.
	JWTIdentityProviderURI string
	// JWTProvisioningDisabled turns jwt-user-provisioning-enabled? off
	// (Metabase's default is on).
	JWTProvisioningDisabled bool
	// JWTGroupSync is jwt-group-sync (default false).
	JWTGroupSync bool
	// JWTGroupMappings is jwt-group-mappings: JWT group name → Metabase group
	// ids. Empty means groups match by exact Metabase group name (1.6).
	JWTGroupMappings map[string][]int
	// EmbeddingSDKEnabled is enable-embedding-sdk, needed by the JSON mode (1.9).
	EmbeddingSDKEnabled bool
	// APIKeys are the API keys that exist (3.2).
	APIKeys []APIKey
	// SiteURL is site-url. Default: the server's own URL.
	SiteURL string
	// MaxSessionAge is MAX_SESSION_AGE, absolute (2.3). Default 14 days.
	MaxSessionAge time.Duration
	// SessionCookieSameSite is session-cookie-samesite: "lax" (default),
	// "strict" or "none".
	SessionCookieSameSite string
	// Now is the clock. Default time.Now. Sessions, JWT times and the login
	// throttle all read it.
	Now func() time.Time
	// QueryDuration is how long POST /api/dataset streams before it
	// completes, by the wall clock (not Now). Default 2 s.
	QueryDuration time.Duration
	// QueryInterval is the time between two streamed rows. Default 50 ms.
	QueryInterval time.Duration
}

// Server is a running Metabase test double.
type Server struct {
	// URL is the base URL, http://127.0.0.1:port.
	URL string

	opts    Options
	siteURL *url.URL
	srv     *httptest.Server

	// mu guards everything below.
	mu           sync.Mutex
	initializing bool
	users        map[int]*user
	groups       map[int]*group
	memberships  map[int]*membership
	sessions     map[string]*session
	apiKeys      map[string]int // key → hidden user id
	nextUser     int
	nextGroup    int
	nextMember   int
	failures     map[string][]time.Time // "user:<email>" or "ip:<addr>" → failed login times
	stats        Stats
	queries      []*Query // POST /api/dataset calls, in arrival order
}

// Stats counts what happened, for tests.
type Stats struct {
	SSOLogins        int // sessions created by /auth/sso
	PasswordLogins   int // sessions created by POST /api/session
	FailedLogins     int // POST /api/session answered 401 (throttled included)
	SessionDeletions int // successful DELETE /api/session
}

type user struct {
	id         int
	email      string
	firstName  string
	lastName   string
	password   string
	active     bool
	ssoSource  string
	attributes map[string]string // jwt attributes
	loginAttrs map[string]any
	apiKey     bool
	lastLogin  *time.Time
}

type group struct {
	id   int
	name string
}

type membership struct {
	id, userID, groupID int
	manager             bool
}

type session struct {
	key     string
	userID  int
	created time.Time
	kind    string // "sso" or "password"
}

// New starts a Server on 127.0.0.1 and closes it when the test ends. It
// fails the test on invalid options.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxSessionAge == 0 {
		opts.MaxSessionAge = DefaultMaxSessionAge
	}
	if opts.QueryDuration == 0 {
		opts.QueryDuration = DefaultQueryDuration
	}
	if opts.QueryInterval == 0 {
		opts.QueryInterval = DefaultQueryInterval
	}
	if opts.QueryDuration < 0 || opts.QueryInterval < 0 {
		t.Fatalf("metabasetest: QueryDuration %v and QueryInterval %v must not be negative", opts.QueryDuration, opts.QueryInterval)
	}
	switch opts.SessionCookieSameSite {
	case "":
		opts.SessionCookieSameSite = "lax"
	case "lax", "strict", "none":
	default:
		t.Fatalf("metabasetest: SessionCookieSameSite %q (want lax, strict or none)", opts.SessionCookieSameSite)
	}
	for g, ids := range opts.JWTGroupMappings {
		for _, id := range ids {
			if id <= 0 {
				t.Fatalf("metabasetest: JWTGroupMappings[%q]: group id %d is not positive", g, id)
			}
		}
	}
	s := &Server{
		opts:        opts,
		users:       map[int]*user{},
		groups:      map[int]*group{},
		memberships: map[int]*membership{},
		sessions:    map[string]*session{},
		apiKeys:     map[string]int{},
		failures:    map[string][]time.Time{},
		nextUser:    1,
		nextGroup:   1,
		nextMember:  1,
	}
	s.addGroupLocked("All Users")
	s.addGroupLocked("Administrators")
	admin := s.addUserLocked(SetupAdminEmail, "Setup", "Admin", SetupAdminPassword)
	s.addMemberLocked(admin.id, AdministratorsGroupID)
	for _, k := range opts.APIKeys {
		if k.Key == "" {
			t.Fatalf("metabasetest: API key %q has no key", k.Name)
		}
		if k.GroupID == 0 {
			k.GroupID = AllUsersGroupID
		}
		if k.GroupID != AllUsersGroupID && k.GroupID != AdministratorsGroupID {
			t.Fatalf("metabasetest: API key %q: group %d (want 1 or 2; no other group exists at start)", k.Name, k.GroupID)
		}
		u := s.addUserLocked(fmt.Sprintf("api-key-user-%d@api-key.invalid", s.nextUser), k.Name, "", "")
		u.apiKey = true
		if k.GroupID != AllUsersGroupID {
			s.addMemberLocked(u.id, k.GroupID)
		}
		s.apiKeys[k.Key] = u.id
	}

	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("metabasetest: listen: %v", err)
	}
	s.URL = "http://" + l.Addr().String()
	site := opts.SiteURL
	if site == "" {
		site = s.URL
	}
	if s.siteURL, err = url.Parse(site); err != nil {
		l.Close()
		t.Fatalf("metabasetest: SiteURL: %v", err)
	}
	s.srv = httptest.NewUnstartedServer(s.handler())
	s.srv.Listener = l
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", s.health)
	mux.HandleFunc("GET /api/session/properties", s.properties)
	mux.HandleFunc("POST /api/session", s.login)
	mux.HandleFunc("DELETE /api/session", s.logout)
	mux.HandleFunc("GET /api/user/current", s.currentUser)
	mux.HandleFunc("GET /api/user", s.admin(s.listUsers))
	mux.HandleFunc("POST /api/user", s.admin(s.createUser))
	mux.HandleFunc("GET /api/user/{id}", s.authed(s.getUser))
	mux.HandleFunc("PUT /api/user/{id}", s.authed(s.updateUser))
	mux.HandleFunc("DELETE /api/user/{id}", s.admin(s.deactivateUser))
	mux.HandleFunc("PUT /api/user/{id}/password", s.authed(s.setPassword))
	mux.HandleFunc("PUT /api/user/{id}/reactivate", s.admin(s.reactivateUser))
	mux.HandleFunc("GET /api/permissions/group", s.admin(s.listGroups))
	mux.HandleFunc("POST /api/permissions/group", s.admin(s.createGroup))
	mux.HandleFunc("GET /api/permissions/group/{id}", s.admin(s.getGroup))
	mux.HandleFunc("PUT /api/permissions/group/{id}", s.admin(s.renameGroup))
	mux.HandleFunc("DELETE /api/permissions/group/{id}", s.admin(s.deleteGroup))
	mux.HandleFunc("GET /api/permissions/membership", s.admin(s.listMemberships))
	mux.HandleFunc("POST /api/permissions/membership", s.admin(s.addMembership))
	mux.HandleFunc("PUT /api/permissions/membership/{id}", s.admin(s.updateMembership))
	mux.HandleFunc("DELETE /api/permissions/membership/{id}", s.admin(s.deleteMembership))
	mux.HandleFunc("PUT /api/permissions/membership/{id}/clear", s.admin(s.clearGroup))
	mux.HandleFunc("POST /api/dataset", s.dataset)
	mux.HandleFunc("/api/public/", s.publicAPI)
	mux.HandleFunc("/api/embed/", s.publicAPI)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusNotFound, "API endpoint does not exist.")
	})
	mux.HandleFunc("GET /auth/sso", s.sso)
	mux.HandleFunc("POST /auth/sso", s.ssoPost)
	mux.HandleFunc("GET /auth/login", s.loginPage)
	mux.HandleFunc("/public/", s.publicPage)
	mux.HandleFunc("/embed/", s.publicPage)
	mux.HandleFunc("GET /app/", s.static)
	mux.HandleFunc("GET /favicon.ico", s.static)
	mux.HandleFunc("/", s.appPage)
	return s.middleware(mux)
}

// middleware answers 503 for every /api/* call but /api/health while the
// server is initializing (2.4), and re-issues metabase.TIMEOUT on responses
// to requests that carried a valid session cookie (2.1, reset-session-timeout).
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		initializing := s.initializing
		s.mu.Unlock()
		if initializing && strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/api/health" {
			writeText(w, http.StatusServiceUnavailable, "Metabase is still initializing. Please sit tight...")
			return
		}
		if c, err := r.Cookie(SessionCookie); err == nil && validUUID(c.Value) {
			s.mu.Lock()
			_, ok := s.liveSessionLocked(c.Value)
			s.mu.Unlock()
			if ok {
				w = &timeoutWriter{ResponseWriter: w, s: s, r: r}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// timeoutWriter adds a fresh metabase.TIMEOUT cookie unless the handler set
// one itself (as DELETE /api/session does to clear it).
type timeoutWriter struct {
	http.ResponseWriter
	s     *Server
	r     *http.Request
	wrote bool
}

func (tw *timeoutWriter) WriteHeader(code int) {
	if !tw.wrote {
		tw.wrote = true
		if !slices.ContainsFunc(tw.Header().Values("Set-Cookie"), func(v string) bool {
			return strings.HasPrefix(v, TimeoutCookie+"=")
		}) {
			http.SetCookie(tw.ResponseWriter, tw.s.timeoutCookie(tw.r))
		}
	}
	tw.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer's
// Flush, which streamed responses need.
func (tw *timeoutWriter) Unwrap() http.ResponseWriter { return tw.ResponseWriter }

func (tw *timeoutWriter) Write(b []byte) (int, error) {
	if !tw.wrote {
		tw.WriteHeader(http.StatusOK)
	}
	return tw.ResponseWriter.Write(b)
}

// --- state helpers; the caller holds s.mu. ---

func (s *Server) now() time.Time { return s.opts.Now() }

func (s *Server) addGroupLocked(name string) *group {
	g := &group{id: s.nextGroup, name: name}
	s.nextGroup++
	s.groups[g.id] = g
	return g
}

func (s *Server) addUserLocked(email, first, last, password string) *user {
	if password == "" {
		password = randomUUID() + "-1"
	}
	u := &user{id: s.nextUser, email: email, firstName: first, lastName: last, password: password, active: true}
	s.nextUser++
	s.users[u.id] = u
	s.addMemberLocked(u.id, AllUsersGroupID)
	return u
}

func (s *Server) userByEmailLocked(email string) *user {
	for _, u := range s.users {
		if strings.EqualFold(u.email, email) {
			return u
		}
	}
	return nil
}

func (s *Server) membershipLocked(uid, gid int) *membership {
	for _, m := range s.memberships {
		if m.userID == uid && m.groupID == gid {
			return m
		}
	}
	return nil
}

func (s *Server) addMemberLocked(uid, gid int) *membership {
	if m := s.membershipLocked(uid, gid); m != nil {
		return m
	}
	m := &membership{id: s.nextMember, userID: uid, groupID: gid}
	s.nextMember++
	s.memberships[m.id] = m
	return m
}

// errLastAdmin is the removal of the last admin, which Metabase refuses
// (contract 1.6 "Always", 3.4).
var errLastAdmin = errors.New("removing the last admin")

// lastAdminMessage is the public message for errLastAdmin [inferred].
const lastAdminMessage = "You cannot remove the last member of the 'Administrators' group!"

// removeMemberLocked removes uid from gid. All Users is never removed here;
// callers check it first.
func (s *Server) removeMemberLocked(uid, gid int) error {
	m := s.membershipLocked(uid, gid)
	if m == nil {
		return nil
	}
	if gid == AdministratorsGroupID && s.adminCountLocked() <= 1 {
		return errLastAdmin
	}
	delete(s.memberships, m.id)
	return nil
}

// adminCountLocked counts the active users, API-key users excluded, in
// Administrators [inferred: Metabase's hook counts memberships].
func (s *Server) adminCountLocked() int {
	n := 0
	for _, m := range s.memberships {
		if u := s.users[m.userID]; m.groupID == AdministratorsGroupID && u.active && !u.apiKey {
			n++
		}
	}
	return n
}

func (s *Server) groupIDsLocked(uid int) []int {
	var ids []int
	for _, m := range s.memberships {
		if m.userID == uid {
			ids = append(ids, m.groupID)
		}
	}
	slices.Sort(ids)
	return ids
}

func (s *Server) isSuperuserLocked(uid int) bool {
	return s.membershipLocked(uid, AdministratorsGroupID) != nil
}

func (s *Server) newSessionLocked(u *user, kind string) *session {
	now := s.now()
	ss := &session{key: randomUUID(), userID: u.id, created: now, kind: kind}
	s.sessions[ss.key] = ss
	u.lastLogin = &now
	return ss
}

// liveSessionLocked finds a session that is not older than MAX_SESSION_AGE
// (absolute, 2.3) and whose user is active.
func (s *Server) liveSessionLocked(key string) (*session, bool) {
	ss, ok := s.sessions[key]
	if !ok {
		return nil, false
	}
	if s.now().Sub(ss.created) > s.opts.MaxSessionAge || !s.users[ss.userID].active {
		return nil, false
	}
	return ss, true
}

func (s *Server) deleteUserSessionsLocked(uid int) {
	for k, ss := range s.sessions {
		if ss.userID == uid {
			delete(s.sessions, k)
		}
	}
}

// --- request helpers ---

// sessionKey returns the session key a request carries, in the order of
// wrap-session-key (2.1): the metabase.SESSION cookie, then the
// X-Metabase-Session header. A value that is not a UUID is ignored, so the
// next source is tried; a UUID cookie wins over the header even when it
// names no live session.
func sessionKey(r *http.Request) (string, bool) {
	if c, err := r.Cookie(SessionCookie); err == nil && validUUID(c.Value) {
		return c.Value, true
	}
	if h := r.Header.Get("X-Metabase-Session"); validUUID(h) {
		return h, true
	}
	return "", false
}

// callerLocked resolves the request's user: session first, then x-api-key.
func (s *Server) callerLocked(r *http.Request) *user {
	if key, ok := sessionKey(r); ok {
		if ss, ok := s.liveSessionLocked(key); ok {
			return s.users[ss.userID]
		}
	}
	if k := r.Header.Get("X-Api-Key"); k != "" {
		if uid, ok := s.apiKeys[k]; ok && s.users[uid].active {
			return s.users[uid]
		}
	}
	return nil
}

// https reports whether Metabase would treat the request as HTTPS
// (request.util/https?, contract 2.2).
func https(r *http.Request) bool {
	for _, h := range []string{"X-Forwarded-Proto", "X-Forwarded-Protocol", "X-Url-Scheme"} {
		if v, ok := r.Header[h]; ok {
			return strings.ToLower(strings.Join(v, ",")) == "https"
		}
	}
	for _, h := range []string{"X-Forwarded-Ssl", "Front-End-Https"} {
		if v, ok := r.Header[h]; ok {
			return strings.ToLower(strings.Join(v, ",")) == "on"
		}
	}
	if o := r.Header.Get("Origin"); o != "" {
		return strings.HasPrefix(o, "https")
	}
	return r.TLS != nil
}

var nonIP = regexp.MustCompile(`[^0-9a-fA-F.:]`)

// clientIP is the first X-Forwarded-For address with non-IP characters
// stripped, else the peer address (2.2).
func clientIP(r *http.Request) string {
	if v := r.Header.Get("X-Forwarded-For"); v != "" {
		first, _, _ := strings.Cut(v, ",")
		return nonIP.ReplaceAllString(first, "")
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) sameSite() http.SameSite {
	switch s.opts.SessionCookieSameSite {
	case "strict":
		return http.SameSiteStrictMode
	case "none":
		return http.SameSiteNoneMode
	}
	return http.SameSiteLaxMode
}

// sessionCookie is metabase.SESSION (2.1): HttpOnly, Path=/, the configured
// SameSite, Secure over https, Max-Age only when maxAge is set.
func (s *Server) sessionCookie(r *http.Request, key string, maxAge bool) *http.Cookie {
	// Secure follows the request (2.2), as in Metabase; that is the behaviour under test.
	c := &http.Cookie{Name: SessionCookie, Value: key, Path: "/", HttpOnly: true, SameSite: s.sameSite(), Secure: https(r)} //nolint:gosec // G124: see above
	if maxAge {
		c.MaxAge = int(s.opts.MaxSessionAge / time.Second)
	}
	return c
}

// timeoutCookie is metabase.TIMEOUT=alive: not HttpOnly, Max-Age =
// MAX_SESSION_AGE in seconds (2.1).
func (s *Server) timeoutCookie(r *http.Request) *http.Cookie {
	// Not HttpOnly: Metabase's frontend reads it (#23349).
	return &http.Cookie{Name: TimeoutCookie, Value: "alive", Path: "/", SameSite: s.sameSite(), Secure: https(r), //nolint:gosec // G124: see above
		MaxAge: int(s.opts.MaxSessionAge / time.Second)}
}

// setLoginCookies sets metabase.SESSION, metabase.TIMEOUT and, when the
// request had none, metabase.DEVICE (1.7, 2.1).
func (s *Server) setLoginCookies(w http.ResponseWriter, r *http.Request, key string, remember bool) {
	http.SetCookie(w, s.sessionCookie(r, key, remember))
	http.SetCookie(w, s.timeoutCookie(r))
	if _, err := r.Cookie(DeviceCookie); err != nil {
		c := &http.Cookie{Name: DeviceCookie, Value: randomUUID(), Path: "/", HttpOnly: true,
			Expires: s.now().AddDate(20, 0, 0).UTC(), SameSite: http.SameSiteLaxMode}
		if https(r) {
			c.SameSite, c.Secure = http.SameSiteNoneMode, true
		}
		http.SetCookie(w, c)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func validUUID(v string) bool { return uuidRE.MatchString(v) }

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}

// writeErrors writes Metabase's {"errors":{field: message}} shape.
func writeErrors(w http.ResponseWriter, status int, field, msg string) {
	writeJSON(w, status, map[string]any{"errors": map[string]string{field: msg}})
}
