package metabase

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/gatehouse-proxy/gatehouse/internal/metabase/metabasetest"
	"github.com/gatehouse-proxy/gatehouse/internal/secret"
	"github.com/google/go-cmp/cmp"
)

var ana = Identity{Issuer: "https://idp.example", Subject: "sub-ana", Email: "ana@example.com", Name: "Ana Lima"}

func TestNewBrokerValidates(t *testing.T) {
	_, c, _ := ossEnv(t)
	nokey, _ := New(Options{BaseURL: "http://127.0.0.1:1"})
	long := secret.NewValue([]byte(testBrokerKey))
	for name, opts := range map[string]BrokerOptions{
		"no client":        {BrokerKey: long},
		"no api key":       {Client: nokey, BrokerKey: long},
		"short key":        {Client: c, BrokerKey: secret.NewValue([]byte("short"))},
		"empty group name": {Client: c, BrokerKey: long, GroupMap: map[string]string{"x": ""}},
		"all users mapped": {Client: c, BrokerKey: long, GroupMap: map[string]string{"x": "All Users"}},
	} {
		if _, err := NewBroker(opts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// metabasePasswordRules are the password rules of contract 3.3
// (ms/ValidPassword): the default "normal" complexity (6 characters, a
// digit) and the strictest setting (8 characters, 2 lower, 2 upper, 1
// digit, 1 special), plus bcrypt's 72-byte limit and printable ASCII.
func metabasePasswordRules(p string) []string {
	var bad []string
	n := func(f func(rune) bool) int {
		c := 0
		for _, r := range p {
			if f(r) {
				c++
			}
		}
		return c
	}
	if len(p) < 8 || len(p) > 72 {
		bad = append(bad, "length")
	}
	if n(unicode.IsLower) < 2 {
		bad = append(bad, "lower")
	}
	if n(unicode.IsUpper) < 2 {
		bad = append(bad, "upper")
	}
	if n(unicode.IsDigit) < 1 {
		bad = append(bad, "digit")
	}
	if n(func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) < 1 {
		bad = append(bad, "special")
	}
	if n(func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) }) > 0 {
		bad = append(bad, "ascii")
	}
	for _, common := range []string{"password", "123456", "qwerty"} {
		if strings.Contains(strings.ToLower(p), common) {
			bad = append(bad, "common")
		}
	}
	return bad
}

func TestPasswordDerivation(t *testing.T) {
	_, c, _ := ossEnv(t)
	b, _ := newBroker(t, c, nil)
	p := b.Password("iss", "sub", 0)
	if p != b.Password("iss", "sub", 0) {
		t.Error("not deterministic")
	}
	seen := map[string]string{}
	for _, in := range [][3]any{{"iss", "sub", 0}, {"iss", "sub", 1}, {"is", "ssub", 0}, {"isss", "ub", 0},
		{"iss", "sub\x00", 0}, {"", "isssub", 0}, {"iss", "sub", -1}, {"other", "sub", 0}} {
		p := b.Password(in[0].(string), in[1].(string), in[2].(int))
		if prev, dup := seen[p]; dup {
			t.Errorf("%v and %s derive the same password", in, prev)
		}
		seen[p] = strings.Join([]string{in[0].(string), in[1].(string)}, "|")
		if bad := metabasePasswordRules(p); len(bad) > 0 {
			t.Errorf("password for %v breaks %v", in, bad)
		}
	}
	other, _ := NewBroker(BrokerOptions{Client: c, BrokerKey: secret.NewValue([]byte(testBrokerKey + "x"))})
	if other.Password("iss", "sub", 0) == p {
		t.Error("key does not change the password")
	}
}

// TestBrokerCreatesThenSignsIn: a new user is created with the derived
// password and the mapped groups, and signed in by password.
func TestBrokerCreatesThenSignsIn(t *testing.T) {
	s, c, _ := ossEnv(t)
	fin := s.AddGroup("Finance")
	b, logs := newBroker(t, c, func(o *BrokerOptions) { o.GroupMap = map[string]string{"idp-finance": "Finance"} })
	id := ana
	id.Groups = []string{"idp-finance", "idp-unmapped"}
	sess, err := b.SignIn(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := s.User("ana@example.com")
	if !ok || u.FirstName != "Ana" || u.LastName != "Lima" || !cmp.Equal(u.GroupIDs, []int{1, fin}) {
		t.Errorf("created %+v", u)
	}
	if u.Password != b.Password(ana.Issuer, ana.Subject, 0) {
		t.Error("password is not the derived one")
	}
	if got := s.Sessions("ana@example.com"); !cmp.Equal(got, []string{key(sess)}) {
		t.Errorf("sessions %v", got)
	}
	if st := s.Stats(); st.PasswordLogins != 1 || st.FailedLogins != 0 {
		t.Errorf("stats %+v", st)
	}
	// The second sign-in changes nothing and logs in again.
	if _, err := b.SignIn(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), b.Password(ana.Issuer, ana.Subject, 0)) || strings.Contains(logs.String(), testAdminKey) {
		t.Error("secret in logs")
	}
}

// TestBrokerGroupSync: managed groups are added and removed, unmanaged
// groups are left alone, All Users is kept, and Administrators is managed
// only when the map names it.
func TestBrokerGroupSync(t *testing.T) {
	s, c, _ := ossEnv(t)
	fin, sales, manual := s.AddGroup("Finance"), s.AddGroup("Sales"), s.AddGroup("Hand-made")
	s.AddUser(metabasetest.NewUser{Email: "ana@example.com", GroupIDs: []int{manual, sales, metabasetest.AdministratorsGroupID}})
	b, _ := newBroker(t, c, func(o *BrokerOptions) {
		o.GroupMap = map[string]string{"idp-finance": "Finance", "idp-sales": "Sales", "idp-sales-eu": "Sales"}
		o.AdoptExistingAccounts = true
	})
	groups := func() []int { u, _ := s.User("ana@example.com"); return u.GroupIDs }
	sign := func(g ...string) {
		t.Helper()
		id := ana
		id.Groups = g
		if _, err := b.SignIn(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	sign("idp-finance")
	if want := []int{1, 2, fin, manual}; !cmp.Equal(groups(), want) {
		t.Errorf("add finance, drop sales: %v, want %v", groups(), want)
	}
	sign("idp-sales-eu", "idp-sales")
	if want := []int{1, 2, sales, manual}; !cmp.Equal(groups(), want) {
		t.Errorf("swap: %v, want %v", groups(), want)
	}
	sign()
	if want := []int{1, 2, manual}; !cmp.Equal(groups(), want) {
		t.Errorf("none: %v, want %v", groups(), want)
	}

	// Administrators mapped: managed both ways.
	ba, _ := newBroker(t, c, func(o *BrokerOptions) {
		o.GroupMap = map[string]string{"idp-admins": "Administrators"}
	})
	id := ana
	if _, err := ba.SignIn(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User("ana@example.com"); u.Superuser {
		t.Error("mapped Administrators not removed")
	}
	id.Groups = []string{"idp-admins"}
	if _, err := ba.SignIn(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User("ana@example.com"); !u.Superuser || !cmp.Equal(u.GroupIDs, []int{1, 2, manual}) {
		t.Errorf("mapped Administrators not added: %+v", u)
	}
}

// TestBrokerUnknownGroupNamed: a GroupMap value that is no Metabase group
// fails the sign-in with an error that names it.
func TestBrokerUnknownGroupNamed(t *testing.T) {
	s, c, _ := ossEnv(t)
	s.AddGroup("Finance")
	b, _ := newBroker(t, c, func(o *BrokerOptions) {
		o.GroupMap = map[string]string{"idp-finance": "Finance", "idp-hr": "Human Resources"}
	})
	_, err := b.SignIn(t.Context(), ana)
	var ug *UnknownGroupError
	if !errors.Is(err, ErrUnknownGroup) || !errors.As(err, &ug) || ug.Name != "Human Resources" ||
		!strings.Contains(err.Error(), `"Human Resources"`) {
		t.Fatalf("err = %v", err)
	}
	if _, ok := s.User("ana@example.com"); ok {
		t.Error("user created despite the error")
	}
}

// TestBrokerRecoversFromForgotPassword: the user took over their password
// with "forgot password"; the broker resets it and retries exactly once.
func TestBrokerRecoversFromForgotPassword(t *testing.T) {
	s, c, _ := ossEnv(t)
	b, _ := newBroker(t, c, nil)
	if _, err := b.SignIn(t.Context(), ana); err != nil {
		t.Fatal(err)
	}
	if err := s.ChangePasswordOutOfBand("ana@example.com", "mine-now-1"); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	sess, err := b.SignIn(t.Context(), ana)
	if err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if after.FailedLogins-before.FailedLogins != 1 || after.PasswordLogins-before.PasswordLogins != 1 {
		t.Errorf("stats before %+v after %+v", before, after)
	}
	if u, _ := s.User("ana@example.com"); u.Password != b.Password(ana.Issuer, ana.Subject, 0) {
		t.Error("password not reset")
	}
	if got := s.Sessions("ana@example.com"); !cmp.Equal(got, []string{key(sess)}) {
		t.Errorf("sessions %v", got)
	}
	// Rotation: a new counter resets every password on its next sign-in.
	b2, _ := newBroker(t, c, func(o *BrokerOptions) { o.PasswordCounter = 1 })
	if _, err := b2.SignIn(t.Context(), ana); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User("ana@example.com"); u.Password != b.Password(ana.Issuer, ana.Subject, 1) {
		t.Error("password not rotated")
	}
}

// TestBrokerDoesNotTakeOverLocalAccount: an account the broker did not
// create for this identity (made by hand, or by another IdP subject with
// the same email) keeps its password unless adoption is on.
func TestBrokerDoesNotTakeOverLocalAccount(t *testing.T) {
	s, c, _ := ossEnv(t)
	s.AddUser(metabasetest.NewUser{Email: "ana@example.com", Password: "human-password-1"})
	b, _ := newBroker(t, c, nil)
	if _, err := b.SignIn(t.Context(), ana); !errors.Is(err, ErrNotBrokered) {
		t.Fatalf("err = %v, want ErrNotBrokered", err)
	}
	if u, _ := s.User("ana@example.com"); u.Password != "human-password-1" {
		t.Error("password reset")
	}

	b, _ = newBroker(t, c, func(o *BrokerOptions) { o.AdoptExistingAccounts = true })
	if _, err := b.SignIn(t.Context(), ana); err != nil {
		t.Fatal(err)
	}
	// Another subject with the same email is refused by a non-adopting broker.
	mallory := ana
	mallory.Subject = "sub-mallory"
	strict, _ := newBroker(t, c, nil)
	if _, err := strict.SignIn(t.Context(), mallory); !errors.Is(err, ErrNotBrokered) {
		t.Fatalf("other subject: err = %v, want ErrNotBrokered", err)
	}
	if _, err := strict.SignIn(t.Context(), ana); err != nil {
		t.Fatalf("adopted account: %v", err)
	}
}

// TestBrokerThrottledNoRetryLoop: when Metabase throttles the username,
// SignIn returns ErrThrottled after one login attempt and resets nothing.
func TestBrokerThrottledNoRetryLoop(t *testing.T) {
	s, c, _ := ossEnv(t)
	b, _ := newBroker(t, c, nil)
	if _, err := b.SignIn(t.Context(), ana); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		_, _ = c.Login(t.Context(), "ana@example.com", "guess-1")
	}
	before := s.Stats()
	_, err := b.SignIn(t.Context(), ana)
	if !errors.Is(err, ErrThrottled) {
		t.Fatalf("err = %v, want ErrThrottled", err)
	}
	if d := s.Stats().FailedLogins - before.FailedLogins; d != 1 {
		t.Errorf("%d login attempts, want 1", d)
	}
	if u, _ := s.User("ana@example.com"); u.Password != b.Password(ana.Issuer, ana.Subject, 0) {
		t.Error("password touched while throttled")
	}
}

// TestBrokerResetFailsOnce: when the password cannot be made to work, the
// broker stops after one reset and one retry.
func TestBrokerResetRetriesOnce(t *testing.T) {
	s, c, _ := ossEnv(t)
	b, _ := newBroker(t, c, nil)
	if _, err := b.SignIn(t.Context(), ana); err != nil {
		t.Fatal(err)
	}
	// A second broker with another key shares the account: each one's login
	// fails, it resets, and its retry succeeds; neither loops.
	other, _ := NewBroker(BrokerOptions{Client: c, BrokerKey: secret.NewValue([]byte(testBrokerKey + "-other"))})
	before := s.Stats()
	if _, err := other.SignIn(t.Context(), ana); err != nil {
		t.Fatal(err)
	}
	if d := s.Stats().FailedLogins - before.FailedLogins; d != 1 {
		t.Errorf("%d failed logins, want 1", d)
	}
}

// TestBrokerDeactivatedStaysDeactivated: unlike JWT SSO with provisioning
// (contract 1.4, 6.13), the broker does not reactivate by default.
func TestBrokerDeactivatedStaysDeactivated(t *testing.T) {
	s, c, _ := ossEnv(t)
	analysts := s.AddGroup("Analysts")
	b, _ := newBroker(t, c, func(o *BrokerOptions) { o.GroupMap = map[string]string{"a": "Analysts"} })
	id := ana
	id.Groups = []string{"a"}
	if _, err := b.SignIn(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if err := b.Deprovision(t.Context(), "ANA@example.com"); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User("ana@example.com"); u.Active || len(s.Sessions("ana@example.com")) != 0 {
		t.Errorf("deprovisioned %+v", u)
	}
	if err := b.Deprovision(t.Context(), "ana@example.com"); err != nil {
		t.Errorf("second deprovision: %v", err)
	}
	if err := b.Deprovision(t.Context(), "nobody@example.com"); err != nil {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := b.SignIn(t.Context(), id); !errors.Is(err, ErrUserDeactivated) {
		t.Fatalf("err = %v, want ErrUserDeactivated", err)
	}
	if u, _ := s.User("ana@example.com"); u.Active {
		t.Error("reactivated")
	}
	rb, _ := newBroker(t, c, func(o *BrokerOptions) {
		o.ReactivateDeactivated = true
		o.GroupMap = map[string]string{"a": "Analysts"}
	})
	if _, err := rb.SignIn(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User("ana@example.com"); !u.Active || !slices.Contains(u.GroupIDs, analysts) {
		t.Errorf("reactivated %+v", u)
	}
}
