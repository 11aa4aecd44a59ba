package auth

import (
	"strings"
	"testing"
)

// FuzzStripCookies checks that no Cookie header, however malformed, gets
// one of gatehouse's cookies past StripCookies to the upstream, and that
// other cookies survive.
func FuzzStripCookies(f *testing.F) {
	for _, s := range []string{
		"gh_session=abc",
		"a=1; gh_session=x; b=2",
		"__Host-gh_session=x;__Host-gh_flow_abc=y; c=3",
		"gh_session",
		";;gh_flow_=;  gh_session =x",
		"a=gh_session; gh_sessionx=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		out := stripCookies(header, "gh_session")
		for part := range strings.SplitSeq(out, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if ownCookie(strings.TrimSpace(name), "gh_session") {
				t.Fatalf("stripCookies(%q) = %q keeps %q", header, out, name)
			}
		}
		if cookieValue(out, "gh_session") != "" || cookieValue(out, "__Host-gh_session") != "" {
			t.Fatalf("stripCookies(%q) = %q still carries a session", header, out)
		}
	})
}

func TestStripCookiesKeepsOthers(t *testing.T) {
	got := stripCookies("a=1; __Host-gh_session=x; gh_flow_abc=y; gh_sessionx=2; b=3", "gh_session")
	if got != "a=1; gh_sessionx=2; b=3" {
		t.Errorf("got %q", got)
	}
	if h := "a=1; b=2"; stripCookies(h, "gh_session") != h {
		t.Error("a header without gatehouse cookies changed")
	}
}

func TestJoinGroupsIsUnambiguous(t *testing.T) {
	if got := joinGroups([]string{"a,b", "50%", "c\r\nX-Evil: 1"}); got != "a%2Cb,50%25,c  X-Evil: 1" {
		t.Errorf("joinGroups = %q", got)
	}
	if got := headerValue("x\ny\x00z"); got != "x y z" {
		t.Errorf("headerValue = %q", got)
	}
}

func TestCookieValueFirstWins(t *testing.T) {
	if got := cookieValue(`x=1; gh_session="v1"; gh_session=v2`, "gh_session"); got != "v1" {
		t.Errorf("cookieValue = %q", got)
	}
	if got := cookieValue("gh_sessionx=1", "gh_session"); got != "" {
		t.Errorf("prefix matched: %q", got)
	}
}
