package session

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewCookieStoreValidation(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*CookieOptions)
		want   []string
	}{
		{"no codec", func(o *CookieOptions) { o.Codec = nil }, []string{"needs a Codec"}},
		{"no name", func(o *CookieOptions) { o.Name = "" }, []string{`cookie name ""`}},
		{"name with prefix", func(o *CookieOptions) { o.Name = "__Host-gh" }, []string{"without a __Host-"}},
		{"name with lower-case prefix", func(o *CookieOptions) { o.Name = "__secure-gh" }, []string{"without a __Host-"}},
		{"name with separator", func(o *CookieOptions) { o.Name = "gh;session" }, []string{"token characters"}},
		{"long name", func(o *CookieOptions) { o.Name = strings.Repeat("n", 33) }, []string{"1 to 32"}},
		{"NUL in audience", func(o *CookieOptions) { o.Audience = "a\x00b" }, []string{"NUL"}},
		{"tiny idle", func(o *CookieOptions) { o.IdleTimeout = time.Millisecond }, []string{"less than a second"}},
		{"lifetime under idle", func(o *CookieOptions) { o.AbsoluteLifetime = time.Minute }, []string{"shorter than the idle timeout"}},
		{"touch not under idle", func(o *CookieOptions) { o.TouchInterval = 30 * time.Minute }, []string{"touch interval"}},
		{"no revocations", func(o *CookieOptions) { o.Revocations = nil }, []string{"needs a RevocationList"}},
		{
			"every problem reported",
			func(o *CookieOptions) { o.Codec, o.Name, o.Revocations = nil, "", nil },
			[]string{"needs a Codec", "cookie name", "needs a RevocationList"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(t)
			tt.modify(&opts)
			_, err := NewCookieStore(opts)
			if err == nil {
				t.Fatal("NewCookieStore succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewCookieStoreDefaults(t *testing.T) {
	opts := testOptions(t)
	opts.IdleTimeout, opts.AbsoluteLifetime, opts.TouchInterval = 0, 0, 0
	c := mustStore(t, opts)
	if c.idle != DefaultIdleTimeout || c.absolute != DefaultAbsoluteLifetime || c.touch != DefaultIdleTimeout/10 {
		t.Errorf("defaults: idle %v, absolute %v, touch %v", c.idle, c.absolute, c.touch)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	c := mustStore(t, testOptions(t))
	for name, s := range map[string]*Session{"typical": typicalSession(t0), "full": fullSession()} {
		t.Run(name, func(t *testing.T) {
			want := *s
			v, err := c.Save(ctx, s, t0)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&want, s); diff != "" {
				t.Errorf("Save modified the session (-before +after):\n%s", diff)
			}
			got, err := c.Load(ctx, v, t0.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s, got); diff != "" {
				t.Errorf("Load(Save(s)) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSaveFillsAndCapsTimes(t *testing.T) {
	c := mustStore(t, testOptions(t))
	s := typicalSession(t0)
	s.LastSeen = time.Time{}
	s.AbsoluteExpiry = t0.Add(1000 * time.Hour)
	v, err := c.Save(ctx, s, t0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Load(ctx, v, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !got.LastSeen.Equal(t0) || !got.AbsoluteExpiry.Equal(t0.Add(12*time.Hour)) {
		t.Errorf("LastSeen %v, AbsoluteExpiry %v; want %v and 12 hours later", got.LastSeen, got.AbsoluteExpiry, t0)
	}
	// An earlier expiry, e.g. the provider session's end, is kept.
	s.AbsoluteExpiry = t0.Add(time.Hour)
	v, _ = c.Save(ctx, s, t0)
	if got, _ := c.Load(ctx, v, t0); !got.AbsoluteExpiry.Equal(t0.Add(time.Hour)) {
		t.Errorf("AbsoluteExpiry %v, want an hour after %v", got.AbsoluteExpiry, t0)
	}
}

func TestSaveRejectsIncompleteOrExpired(t *testing.T) {
	c := mustStore(t, testOptions(t))
	tests := map[string]struct {
		modify func(*Session)
		want   error
	}{
		"no ID":                  {func(s *Session) { s.ID = ID{} }, ErrInvalid},
		"no issuer":              {func(s *Session) { s.Issuer = "" }, ErrInvalid},
		"no subject":             {func(s *Session) { s.Subject = "" }, ErrInvalid},
		"no creation time":       {func(s *Session) { s.CreatedAt = time.Time{} }, ErrInvalid},
		"seen before created":    {func(s *Session) { s.LastSeen = t0.Add(-time.Second) }, ErrInvalid},
		"expires before created": {func(s *Session) { s.AbsoluteExpiry = t0 }, ErrInvalid},
		"already expired":        {func(s *Session) { s.AbsoluteExpiry = t0.Add(time.Minute) }, ErrExpired},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := typicalSession(t0)
			tt.modify(s)
			if _, err := c.Save(ctx, s, t0.Add(time.Minute)); !errors.Is(err, tt.want) {
				t.Errorf("Save = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLoadRejectsGarbage(t *testing.T) {
	c := mustStore(t, testOptions(t))
	for _, v := range []string{"", "x", "deleted", strings.Repeat("A", 100), strings.Repeat("A", 5000)} {
		if s, err := c.Load(ctx, v, t0); err == nil {
			t.Errorf("Load(%.20q) = %v", v, s)
		}
	}
}

// TestLoadRejectsInvalidSealedSession seals sessions that Save would refuse
// directly with the codec: a store must not trust even its own key blindly.
func TestLoadRejectsInvalidSealedSession(t *testing.T) {
	opts := testOptions(t)
	c := mustStore(t, opts)
	seal := func(s *Session) string {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		v, err := opts.Codec.Seal(c.purpose, b)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := map[string]func(*Session){
		"no ID":            func(s *Session) { s.ID = ID{} },
		"no subject":       func(s *Session) { s.Subject = "" },
		"no LastSeen":      func(s *Session) { s.LastSeen = time.Time{} },
		"no expiry":        func(s *Session) { s.AbsoluteExpiry = time.Time{} },
		"created in 2 min": func(s *Session) { s.CreatedAt, s.LastSeen = t0.Add(2*time.Minute), t0.Add(2*time.Minute) },
		"seen in 2 min":    func(s *Session) { s.LastSeen = t0.Add(2 * time.Minute) },
	}
	for name, modify := range tests {
		t.Run(name, func(t *testing.T) {
			s := typicalSession(t0)
			modify(s)
			if _, err := c.Load(ctx, seal(s), t0); !errors.Is(err, ErrInvalid) {
				t.Errorf("Load = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := c.Load(ctx, seal(typicalSession(t0.Add(time.Minute))), t0); err != nil {
		t.Errorf("a session from a clock a minute ahead: %v", err)
	}
	if _, err := c.Load(ctx, b64.EncodeToString([]byte("not a session")), t0); err == nil {
		t.Error("non-session bytes loaded")
	}
	v, _ := opts.Codec.Seal(c.purpose, []byte("not a session"))
	if _, err := c.Load(ctx, v, t0); !errors.Is(err, ErrEncoding) {
		t.Errorf("sealed non-session bytes: %v, want ErrEncoding", err)
	}
}

func TestIdleTimeoutEnforcedFromSealedTimestamps(t *testing.T) {
	c := mustStore(t, testOptions(t)) // idle 30 min, touch every 3 min
	v, err := c.Save(ctx, typicalSession(t0), t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(ctx, v, t0.Add(30*time.Minute-time.Second)); err != nil {
		t.Errorf("just under the idle timeout: %v", err)
	}
	if _, err := c.Load(ctx, v, t0.Add(30*time.Minute)); !errors.Is(err, ErrIdle) {
		t.Errorf("at the idle timeout: %v, want ErrIdle", err)
	}

	// Activity every 10 minutes keeps it alive through Touch; the timeout
	// counts from the LastSeen inside the newest cookie.
	now := t0
	for range 12 {
		now = now.Add(10 * time.Minute)
		s, err := c.Load(ctx, v, now)
		if err != nil {
			t.Fatalf("at %v: %v", now.Sub(t0), err)
		}
		nv, err := c.Touch(ctx, s, now)
		if err != nil {
			t.Fatal(err)
		}
		if nv == "" {
			t.Fatalf("at %v: Touch did not re-seal a 10-minute-old session", now.Sub(t0))
		}
		v = nv
	}
	if _, err := c.Load(ctx, v, now.Add(31*time.Minute)); !errors.Is(err, ErrIdle) {
		t.Errorf("31 minutes after the last touch: %v, want ErrIdle", err)
	}

	// The client cannot refresh LastSeen itself: replaying the first cookie
	// fails, although the session is active.
	first, _ := c.Save(ctx, typicalSession(t0), t0)
	if _, err := c.Load(ctx, first, t0.Add(time.Hour)); !errors.Is(err, ErrIdle) {
		t.Errorf("an old cookie replayed: %v, want ErrIdle", err)
	}
}

func TestTouchOnlyAfterInterval(t *testing.T) {
	c := mustStore(t, testOptions(t))
	s := typicalSession(t0)
	if v, err := c.Touch(ctx, s, t0.Add(3*time.Minute-time.Second)); v != "" || err != nil {
		t.Errorf("Touch before the interval = %q, %v; want no new cookie", v, err)
	}
	v, err := c.Touch(ctx, s, t0.Add(3*time.Minute))
	if err != nil || v == "" {
		t.Fatalf("Touch at the interval = %q, %v", v, err)
	}
	if !s.LastSeen.Equal(t0) {
		t.Error("Touch modified the session")
	}
	got, err := c.Load(ctx, v, t0.Add(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !got.LastSeen.Equal(t0.Add(3*time.Minute)) || got.ID != s.ID {
		t.Errorf("touched session: LastSeen %v, same ID %v", got.LastSeen, got.ID == s.ID)
	}
}

func TestAbsoluteLifetimeEnforced(t *testing.T) {
	opts := testOptions(t)
	opts.TouchInterval = time.Second
	c := mustStore(t, opts)
	v, err := c.Save(ctx, typicalSession(t0), t0)
	if err != nil {
		t.Fatal(err)
	}
	// Constant activity does not extend it.
	now := t0
	for now.Before(t0.Add(12*time.Hour - 10*time.Minute)) {
		now = now.Add(10 * time.Minute)
		s, err := c.Load(ctx, v, now)
		if err != nil {
			t.Fatalf("at %v: %v", now.Sub(t0), err)
		}
		if v, err = c.Touch(ctx, s, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Load(ctx, v, t0.Add(12*time.Hour-time.Second)); err != nil {
		t.Errorf("a second before the absolute expiry: %v", err)
	}
	if _, err := c.Load(ctx, v, t0.Add(12*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("at the absolute expiry: %v, want ErrExpired", err)
	}
	if _, err := c.Touch(ctx, &Session{ID: NewID(), Issuer: "i", Subject: "s", CreatedAt: t0}, t0.Add(12*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("Touch of an expired session: %v, want ErrExpired", err)
	}

	// A shorter lifetime configured later applies to existing cookies.
	opts.AbsoluteLifetime = time.Hour
	opts.TouchInterval = 0
	shorter := mustStore(t, opts)
	long, _ := c.Save(ctx, typicalSession(t0), t0)
	if _, err := shorter.Load(ctx, long, t0.Add(time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("12-hour cookie after the lifetime became 1 hour: %v, want ErrExpired", err)
	}
	// A longer lifetime configured later does not extend existing cookies.
	opts.AbsoluteLifetime = 48 * time.Hour
	longer := mustStore(t, opts)
	if _, err := longer.Load(ctx, long, t0.Add(12*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("12-hour cookie after the lifetime became 48 hours: %v, want ErrExpired", err)
	}
}

func TestRevokedSessionRejected(t *testing.T) {
	c := mustStore(t, testOptions(t))
	s := typicalSession(t0)
	v, _ := c.Save(ctx, s, t0)
	loaded, err := c.Load(ctx, v, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// A touched copy carries the same ID.
	touched, _ := c.Touch(ctx, loaded, t0.Add(5*time.Minute))
	if err := c.Revoke(ctx, loaded, t0.Add(6*time.Minute)); err != nil {
		t.Fatal(err)
	}
	for name, cookie := range map[string]string{"original": v, "touched": touched} {
		if _, err := c.Load(ctx, cookie, t0.Add(7*time.Minute)); !errors.Is(err, ErrRevoked) {
			t.Errorf("%s cookie after logout: %v, want ErrRevoked", name, err)
		}
	}
	// Another session of the same user is not affected.
	other, _ := c.Save(ctx, typicalSession(t0), t0)
	if _, err := c.Load(ctx, other, t0.Add(7*time.Minute)); err != nil {
		t.Errorf("the user's other session after logout: %v", err)
	}
}

func TestRevocationSurvivesStoreRebuild(t *testing.T) {
	opts := testOptions(t)
	c := mustStore(t, opts)
	s := typicalSession(t0)
	v, _ := c.Save(ctx, s, t0)
	if err := c.Revoke(ctx, s, t0); err != nil {
		t.Fatal(err)
	}
	opts.IdleTimeout = 20 * time.Minute // a reload builds a new store on the same list
	reloaded := mustStore(t, opts)
	if _, err := reloaded.Load(ctx, v, t0.Add(time.Minute)); !errors.Is(err, ErrRevoked) {
		t.Errorf("after reload: %v, want ErrRevoked", err)
	}
}

func TestBackchannelRevocationSparesLaterLogins(t *testing.T) {
	for _, by := range []string{"sid", "subject"} {
		t.Run(by, func(t *testing.T) {
			c := mustStore(t, testOptions(t))
			before := typicalSession(t0)
			vBefore, _ := c.Save(ctx, before, t0)
			elsewhere := typicalSession(t0.Add(time.Minute)) // same user, another browser, same IdP session
			vElsewhere, _ := c.Save(ctx, elsewhere, t0.Add(time.Minute))
			stranger := typicalSession(t0)
			stranger.Subject, stranger.SID = "someone-else", "another-sid"
			vStranger, _ := c.Save(ctx, stranger, t0)

			logout := t0.Add(10 * time.Minute)
			var err error
			if by == "sid" {
				err = c.RevokeBySID(ctx, before.Issuer, before.SID, logout)
			} else {
				err = c.RevokeBySubject(ctx, before.Issuer, before.Subject, logout)
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, v := range map[string]string{"session": vBefore, "other browser": vElsewhere} {
				if _, err := c.Load(ctx, v, logout.Add(time.Second)); !errors.Is(err, ErrRevoked) {
					t.Errorf("%s after back-channel logout: %v, want ErrRevoked", name, err)
				}
			}
			if _, err := c.Load(ctx, vStranger, logout.Add(time.Second)); err != nil {
				t.Errorf("another user's session: %v", err)
			}

			// The user signs in again a second later (a new IdP session
			// may even reuse the sid): the new session works.
			again := typicalSession(logout.Add(time.Second))
			again.SID = before.SID
			vAgain, _ := c.Save(ctx, again, logout.Add(time.Second))
			if _, err := c.Load(ctx, vAgain, logout.Add(2*time.Second)); err != nil {
				t.Errorf("new login after back-channel logout: %v", err)
			}
			// The same issuer with a different subject or sid, and the same
			// subject under another issuer, are unaffected.
			foreign := typicalSession(t0)
			foreign.Issuer = "https://other.example.com"
			vForeign, _ := c.Save(ctx, foreign, t0)
			if _, err := c.Load(ctx, vForeign, logout.Add(time.Second)); err != nil {
				t.Errorf("same subject and sid from another issuer: %v", err)
			}
		})
	}
}

func TestCookieFromOtherAudienceRejected(t *testing.T) {
	opts := testOptions(t)
	opts.Audience = "metabase.example.com"
	a := mustStore(t, opts)
	opts.Audience = "grafana.example.com"
	b := mustStore(t, opts)
	v, _ := a.Save(ctx, typicalSession(t0), t0)
	if _, err := b.Load(ctx, v, t0); !errors.Is(err, ErrTampered) {
		t.Errorf("cookie for another host: %v, want ErrTampered", err)
	}
	if _, err := a.Load(ctx, v, t0); err != nil {
		t.Errorf("cookie for its own host: %v", err)
	}
}

func TestFlowCookieCannotBeLoadedAsSession(t *testing.T) {
	opts := testOptions(t)
	c := mustStore(t, opts)
	b, _ := typicalSession(t0).MarshalBinary()
	flow, _ := opts.Codec.Seal(flowPurpose, b)
	if _, err := c.Load(ctx, flow, t0); !errors.Is(err, ErrTampered) {
		t.Errorf("flow cookie loaded as a session: %v, want ErrTampered", err)
	}
}

func TestLargeSessionFitsOrFailsCleanly(t *testing.T) {
	c := mustStore(t, testOptions(t))
	withGroups := func(n int) *Session {
		s := typicalSession(t0)
		s.IDTokenHint = fakeJWT(1200)
		s.Groups = make([]string, n)
		for i := range s.Groups {
			s.Groups[i] = "group-" + strings.Repeat("x", 10) + string(rune('a'+i%26))
		}
		return s
	}

	// Few groups: everything fits, the ID token included.
	s := withGroups(10)
	v, err := c.Save(ctx, s, t0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Load(ctx, v, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got.IDTokenHint != s.IDTokenHint {
		t.Error("the ID token was dropped although the session fits")
	}

	// Grow until the ID token has to go, then until nothing helps.
	var dropped, failed int
	for n := 10; n < 400 && failed == 0; n++ {
		s := withGroups(n)
		v, err := c.Save(ctx, s, t0)
		switch {
		case errors.Is(err, ErrTooLarge):
			failed = n
			continue
		case err != nil:
			t.Fatalf("%d groups: %v", n, err)
		}
		if len(v) > MaxCookieValue {
			t.Fatalf("%d groups: cookie value of %d bytes", n, len(v))
		}
		got, err := c.Load(ctx, v, t0)
		if err != nil {
			t.Fatalf("%d groups: %v", n, err)
		}
		if len(got.Groups) != n {
			t.Fatalf("%d groups: loaded %d", n, len(got.Groups))
		}
		if got.IDTokenHint == "" && dropped == 0 {
			dropped = n
		}
		if dropped != 0 && got.IDTokenHint != "" {
			t.Fatalf("%d groups: the ID token is back after being dropped at %d", n, dropped)
		}
		if s.IDTokenHint == "" {
			t.Fatal("Save cleared the caller's IDTokenHint")
		}
	}
	if dropped == 0 || failed == 0 || failed <= dropped {
		t.Fatalf("ID token dropped at %d groups, ErrTooLarge at %d; want both, in that order", dropped, failed)
	}
	t.Logf("ID token (1200 bytes) dropped at %d groups; ErrTooLarge from %d groups", dropped, failed)
}

// TestTypicalCookieSize guards the size of a typical session cookie and
// logs the sizes of heavier ones.
func TestTypicalCookieSize(t *testing.T) {
	c := mustStore(t, testOptions(t))
	size := func(s *Session) int {
		v, err := c.Save(ctx, s, t0)
		if err != nil {
			t.Fatal(err)
		}
		return len(v)
	}
	typical := size(typicalSession(t0))
	if typical > 512 {
		t.Errorf("a typical session seals to %d bytes, over 512", typical)
	}
	bare := typicalSession(t0)
	bare.RefreshToken = ""
	withJWTRefresh := typicalSession(t0)
	withJWTRefresh.RefreshToken = fakeJWT(800)
	withIDToken := typicalSession(t0)
	withIDToken.IDTokenHint = fakeJWT(1000)
	both := typicalSession(t0)
	both.RefreshToken, both.IDTokenHint = fakeJWT(800), fakeJWT(1000)
	t.Logf("sealed cookie value, 5 groups: %d bytes; without refresh token %d; with an 800-byte JWT refresh token %d; with a 1000-byte ID token %d; with both %d (limit %d)",
		typical, size(bare), size(withJWTRefresh), size(withIDToken), size(both), MaxCookieValue)
}

// TestOpenedCacheStillChecksTimeAndRevocation loads a session twice (the
// second time from the opened-session cache) and checks that expiry, the
// idle timeout and revocation apply to the cached copy too.
func TestOpenedCacheStillChecksTimeAndRevocation(t *testing.T) {
	opts := testOptions(t)
	c := mustStore(t, opts)
	s := typicalSession(t0)
	v, err := c.Save(ctx, s, t0)
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Load(ctx, v, t0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Load(ctx, v, t0)
	if err != nil || second != first {
		t.Fatalf("second Load = %p, %v; want the cached %p", second, err, first)
	}
	if _, err := c.Load(ctx, v, t0.Add(opts.IdleTimeout)); !errors.Is(err, ErrIdle) {
		t.Errorf("cached session past the idle timeout: %v, want ErrIdle", err)
	}
	if _, err := c.Load(ctx, v, t0.Add(13*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("cached session past its lifetime: %v, want ErrExpired", err)
	}
	if err := c.Revoke(ctx, first, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(ctx, v, t0); !errors.Is(err, ErrRevoked) {
		t.Errorf("cached session after revocation: %v, want ErrRevoked", err)
	}
}
