package testenv

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// loginServer is a tiny provider: /authorize redirects to /login, whose form
// posts back to /login, which redirects to the relying party's callback.
func loginServer(t *testing.T, userField, method string, callback string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "flow", Value: "f1", Path: "/"})
		http.Redirect(w, r, "/login?req="+r.URL.Query().Get("state"), http.StatusFound)
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == method && r.FormValue("password") != "" {
			c, err := r.Cookie("flow")
			switch {
			case err != nil || c.Value != "f1":
				http.Error(w, "no flow cookie", http.StatusBadRequest)
			case r.FormValue("csrf") != `a&"b` || r.FormValue("remember") != "on" || r.FormValue("off") != "":
				http.Error(w, "bad hidden fields: "+r.Form.Encode(), http.StatusBadRequest)
			case r.FormValue(userField) == "alice" && r.FormValue("password") == "pw":
				http.Redirect(w, r, "/approve?req="+r.FormValue("req"), http.StatusSeeOther)
			default:
				fmt.Fprint(w, strings.ReplaceAll(page(userField, method), "{{REQ}}", r.FormValue("req")))
			}
			return
		}
		fmt.Fprint(w, strings.ReplaceAll(page(userField, method), "{{REQ}}", r.FormValue("req")))
	})
	mux.HandleFunc("/approve", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, callback+"?code=c1&state="+r.URL.Query().Get("req"), http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func page(userField, method string) string {
	return `<!DOCTYPE html><html><head><title>Log in <form></title>
<script>var s = "<form action='/evil'><input type=password name=x>";</script></head>
<body><!-- <form action="/commented"><input type="password"></form> -->
<form action="/search"><input name="q"></form>
<form method="` + method + `" action="login">
  <input type=hidden name="req" value="` + "{{REQ}}" + `">
  <input type="hidden" name='csrf' value="a&amp;&quot;b">
  <input id="u" name="` + userField + `" type="text" class="x" autofocus/>
  <input name=password type=password>
  <input type="checkbox" name="remember" checked>
  <input type="checkbox" name="off" value="1">
  <button type="submit" name="go">Log in</button>
</form></body></html>`
}

func TestLogin(t *testing.T) {
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("Login requested the callback %s", r.URL)
	}))
	defer rp.Close()
	callback := rp.URL + "/callback"

	tests := []struct {
		name      string
		userField string
		method    string
		start     string // path on the login server
		password  string
		wantErr   string
	}{
		{name: "dex-style-login-field", userField: "login", method: http.MethodPost, start: "/authorize?state=s1", password: "pw"},
		{name: "username-field", userField: "username", method: http.MethodPost, start: "/authorize?state=s1", password: "pw"},
		{name: "get-form", userField: "username", method: http.MethodGet, start: "/authorize?state=s1", password: "pw"},
		{name: "wrong-password", userField: "login", method: http.MethodPost, start: "/authorize?state=s1", password: "nope", wantErr: "credentials rejected"},
		{name: "redirect-loop-bounded", userField: "login", method: http.MethodPost, start: "/loop", password: "pw", wantErr: "after 10 requests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := loginServer(t, tt.userField, tt.method, callback)
			jar, err := cookiejar.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Login(context.Background(), &http.Client{Jar: jar}, srv.URL+tt.start, "alice", tt.password, callback)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Login error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if want := callback + "?code=c1&state=s1"; got.String() != want {
				t.Errorf("Login = %s, want %s", got, want)
			}
		})
	}
}

func TestParseForms(t *testing.T) {
	page := strings.ReplaceAll(page("login", http.MethodPost), "{{REQ}}", "r1")
	got := parseForms([]byte(page))
	want := []htmlForm{
		{action: "/search", method: http.MethodGet, inputs: []htmlInput{{name: "q", typ: "text"}}},
		{action: "login", method: http.MethodPost, inputs: []htmlInput{
			{name: "req", typ: "hidden", value: "r1"},
			{name: "csrf", typ: "hidden", value: `a&"b`},
			{name: "login", typ: "text"},
			{name: "password", typ: "password"},
			{name: "remember", typ: "checkbox", checked: true},
			{name: "off", typ: "checkbox", value: "1"},
		}},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(htmlForm{}, htmlInput{}), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("parseForms (-want +got):\n%s", diff)
	}
}
