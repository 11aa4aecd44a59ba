package metabase

import (
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/metabase/metabasetest"
	"github.com/gatehouse-proxy/gatehouse/internal/secret"
)

func TestNewValidates(t *testing.T) {
	for _, base := range []string{"", "metabase:3000", "ftp://metabase", "http://", "http://u:p@metabase",
		"http://metabase/?x=1", "http://metabase/#f"} {
		if _, err := New(Options{BaseURL: base}); err == nil {
			t.Errorf("New(%q): no error", base)
		}
	}
	if _, err := New(Options{BaseURL: "http://metabase:3000", MaxSessionAge: -time.Second}); err == nil {
		t.Error("negative MaxSessionAge accepted")
	}
	c, err := New(Options{BaseURL: "https://metabase.internal/bi/"})
	if err != nil {
		t.Fatal(err)
	}
	if c.base.String() != "https://metabase.internal/bi" {
		t.Errorf("base %s", c.base)
	}
}

// TestCookieJarCannotOverrideSessionHeader: a caller's http.Client with a
// jar would store metabase.SESSION from one login and send it with the next
// call, where the cookie wins over X-Metabase-Session (2.1) and the call runs
// as the wrong user. The Client drops the jar.
func TestCookieJarCannotOverrideSessionHeader(t *testing.T) {
	s, _, clock := ossEnv(t)
	s.AddUser(metabasetest.NewUser{Email: "bob@example.com", Password: "bob-password-1"})
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{BaseURL: s.URL, HTTPClient: &http.Client{Jar: jar}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := c.Login(t.Context(), metabasetest.SetupAdminEmail, metabasetest.SetupAdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := c.Login(t.Context(), "bob@example.com", "bob-password-1")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := c.CurrentUser(t.Context(), admin.Key); err != nil || u.Email != metabasetest.SetupAdminEmail {
		t.Errorf("admin session is %+v, %v", u, err)
	}
	if u, err := c.CurrentUser(t.Context(), bob.Key); err != nil || u.Email != "bob@example.com" {
		t.Errorf("bob session is %+v, %v", u, err)
	}
}

// TestRedirectsNeverFollowed: a 302 from Metabase (or anything in front of
// it) is not followed, so credentials are never sent to another host.
func TestRedirectsNeverFollowed(t *testing.T) {
	var followed bool
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed = true }))
	defer other.Close()
	redir := httptest.NewServer(http.RedirectHandler(other.URL+"/steal", http.StatusFound))
	defer redir.Close()
	c, err := New(Options{BaseURL: redir.URL, APIKey: secret.NewValue([]byte(testAdminKey))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListGroups(t.Context()); !errors.Is(err, ErrUnexpected) {
		t.Errorf("err = %v", err)
	}
	if _, err := c.SSOSession(t.Context(), "a.b.c"); !errors.Is(err, ErrNoSession) {
		t.Errorf("err = %v", err)
	}
	if followed {
		t.Error("redirect followed")
	}
}

// TestLoginErrors pins 2.4: wrong credentials vs throttled, told apart.
func TestLoginErrors(t *testing.T) {
	s, c, _ := ossEnv(t)
	s.AddUser(metabasetest.NewUser{Email: "bob@example.com", Password: "bob-password-1"})
	sess, err := c.Login(t.Context(), "bob@example.com", "bob-password-1")
	if err != nil || !uuidRE.MatchString(key(sess)) {
		t.Fatalf("login: %v", err)
	}
	if _, err := c.Login(t.Context(), "bob@example.com", "wrong-1"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := c.Login(t.Context(), "", "x"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("blank username: %v", err)
	}
	u, _ := s.User("bob@example.com")
	if err := c.Deactivate(t.Context(), u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(t.Context(), "bob@example.com", "bob-password-1"); !errors.Is(err, ErrAccountDisabled) {
		t.Errorf("deactivated: %v", err)
	}
	s.SetInitializing(true)
	if _, err := c.Login(t.Context(), "bob@example.com", "bob-password-1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("initializing: %v", err)
	}
}

// TestLoginThrottledIsNotRetried: past 10 failures Metabase throttles the
// username (2.4); Login reports ErrThrottled with the wait and sends exactly
// one request per call.
func TestLoginThrottledIsNotRetried(t *testing.T) {
	s, c, _ := ossEnv(t)
	s.AddUser(metabasetest.NewUser{Email: "bob@example.com", Password: "bob-password-1"})
	for range 10 {
		if _, err := c.Login(t.Context(), "bob@example.com", "wrong-1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure: %v", err)
		}
	}
	before := s.Stats().FailedLogins
	_, err := c.Login(t.Context(), "bob@example.com", "bob-password-1")
	var e *Error
	if !errors.Is(err, ErrThrottled) || !errors.As(err, &e) || e.RetryAfter != 15*time.Second {
		t.Fatalf("err = %v (%+v), want ErrThrottled with RetryAfter 15s", err, e)
	}
	if got := s.Stats().FailedLogins - before; got != 1 {
		t.Errorf("%d requests for one Login, want 1", got)
	}
}

// TestLogoutDeletesSession pins 2.4 and 6.11.
func TestLogoutDeletesSession(t *testing.T) {
	s, c, _ := ossEnv(t)
	sess, err := c.Login(t.Context(), metabasetest.SetupAdminEmail, metabasetest.SetupAdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Logout(t.Context(), sess.Key); err != nil {
		t.Fatal(err)
	}
	if got := s.Sessions(metabasetest.SetupAdminEmail); len(got) != 0 {
		t.Errorf("sessions left: %d", len(got))
	}
	if _, err := c.CurrentUser(t.Context(), sess.Key); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("current user after logout: %v", err)
	}
	if err := c.Logout(t.Context(), sess.Key); err != nil {
		t.Errorf("second logout: %v", err)
	}
	if st := s.Stats(); st.SessionDeletions != 1 {
		t.Errorf("deletions %d", st.SessionDeletions)
	}
	if err := c.Logout(t.Context(), secret.NewValue([]byte("forged"))); !errors.Is(err, ErrInvalidSessionKey) {
		t.Errorf("non-uuid key: %v", err)
	}
}

// TestAdminAPI walks the admin calls of 3.3 and 3.4.
func TestAdminAPI(t *testing.T) {
	s, c, _ := ossEnv(t)
	fin := s.AddGroup("Finance")
	sales := s.AddGroup("Sales")
	groups, err := c.ListGroups(t.Context())
	if err != nil || len(groups) != 4 || groups[0] != (Group{1, "All Users"}) || groups[1] != (Group{2, "Administrators"}) {
		t.Fatalf("groups %v, %v", groups, err)
	}
	if _, err := c.FindUser(t.Context(), "ana@example.com"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("find before create: %v", err)
	}
	a, err := c.CreateUser(t.Context(), NewAccount{Email: "ana@example.com", FirstName: "Ana", LastName: "Lima",
		Password: "ana-password-1", GroupIDs: []int{fin}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, fin}; !slices.Equal(a.GroupIDs, want) {
		t.Errorf("created groups %v, want %v", a.GroupIDs, want)
	}
	if _, err := c.CreateUser(t.Context(), NewAccount{Email: "ANA@example.com"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("duplicate: %v", err)
	}
	found, err := c.FindUser(t.Context(), "ANA@EXAMPLE.COM")
	if err != nil || found.ID != a.ID {
		t.Fatalf("find: %+v %v", found, err)
	}
	if a, err = c.SetGroups(t.Context(), a.ID, []int{sales}); err != nil || !slices.Equal(a.GroupIDs, []int{1, sales}) {
		t.Errorf("set groups: %v %v", a.GroupIDs, err)
	}
	first := "Anna"
	if a, err = c.UpdateUser(t.Context(), a.ID, AccountUpdate{FirstName: &first}); err != nil || a.FirstName != "Anna" || a.LastName != "Lima" {
		t.Errorf("update: %+v %v", a, err)
	}
	if err := c.SetPassword(t.Context(), a.ID, "weak"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("weak password: %v", err)
	}
	if err := c.SetPassword(t.Context(), a.ID, "new-password-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(t.Context(), "ana@example.com", "new-password-2"); err != nil {
		t.Errorf("login with new password: %v", err)
	}
	if err := c.Deactivate(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	if found, _ = c.FindUser(t.Context(), "ana@example.com"); found.Active {
		t.Error("still active")
	}
	if _, err := c.UpdateUser(t.Context(), a.ID, AccountUpdate{FirstName: &first}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update deactivated: %v", err)
	}
	if a, err = c.Reactivate(t.Context(), a.ID); err != nil || !a.Active {
		t.Errorf("reactivate: %+v %v", a, err)
	}
	if _, err := c.Reactivate(t.Context(), a.ID); !errors.Is(err, ErrBadRequest) {
		t.Errorf("reactivate active: %v", err)
	}

	reader := newClient(t, s, newClock(), testReaderKey)
	if _, err := reader.ListGroups(t.Context()); !errors.Is(err, ErrForbidden) {
		t.Errorf("non-admin key: %v", err)
	}
	nokey, _ := New(Options{BaseURL: s.URL})
	if _, err := nokey.ListGroups(t.Context()); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("no key: %v", err)
	}
}
