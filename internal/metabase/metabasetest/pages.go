package metabasetest

import (
	"html"
	"net/http"
	"net/url"
	"strconv"
)

// health serves GET /api/health (2.4): 200 {"status":"ok"}, or 503 while
// initializing.
func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	initializing := s.initializing
	s.mu.Unlock()
	if initializing {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "initializing", "progress": 0.5})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// publicAPI serves /api/public/* and /api/embed/*, which need no session (4).
func (s *Server) publicAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"path": r.URL.Path})
}

// publicPage serves /public/* and /embed/*, which need no session (4).
func (s *Server) publicPage(w http.ResponseWriter, r *http.Request) {
	writeHTML(w, http.StatusOK, "<p>public page "+html.EscapeString(r.URL.Path)+"</p>")
}

// static serves /app/* (404 if missing) and /favicon.ico (4).
func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/favicon.ico":
		w.Header().Set("Content-Type", "image/x-icon")
		_, _ = w.Write([]byte{0, 0, 1, 0})
	case "/app/app.js":
		w.Header().Set("Content-Type", "application/javascript")
		_, _ = w.Write([]byte("// metabasetest\n"))
	default:
		http.NotFound(w, r)
	}
}

// UserHeader is the response header in which the app page names the user it
// sees, for tests that prove who is signed in.
const UserHeader = "X-Metabasetest-User"

// appPage serves / and every other path the SPA routes (/dashboard/12,
// /question/…). It needs a session (cookie or X-Metabase-Session) and shows
// whose it is; without one it sends the browser to /auth/login, as
// Metabase's frontend does in the browser (4).
func (s *Server) appPage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	var u *user
	if key, ok := sessionKey(r); ok {
		if ss, ok := s.liveSessionLocked(key); ok {
			u = s.users[ss.userID]
		}
	}
	var email string
	var id int
	if u != nil {
		email, id = u.email, u.id
	}
	s.mu.Unlock()
	if u == nil {
		w.Header().Set("Location", "/auth/login?redirect="+url.QueryEscape(r.URL.RequestURI()))
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set(UserHeader, email)
	writeHTML(w, http.StatusOK, `<p id="user" data-user-id="`+strconv.Itoa(id)+`" data-user-email="`+html.EscapeString(email)+
		`">Signed in as `+html.EscapeString(email)+`</p><p id="path">`+html.EscapeString(r.URL.Path)+`</p>`)
}

// loginPage serves /auth/login, what Metabase shows a browser without a
// session: the password form and, with JWT enabled, an SSO button linking to
// /auth/sso?redirect=<path>. Metabase never redirects to the IdP by itself
// (4, #15482).
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	body := `<form id="password-login" method="post" action="/api/session"></form>`
	if s.opts.Edition == Enterprise && s.opts.JWTEnabled && s.opts.JWTSharedSecret != "" {
		redirect := r.URL.Query().Get("redirect")
		if redirect == "" {
			redirect = "/"
		}
		body += `<a id="sso" href="` + html.EscapeString("/auth/sso?redirect="+url.QueryEscape(redirect)) + `">Sign in with SSO</a>`
	}
	writeHTML(w, http.StatusOK, body)
}

func writeHTML(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte("<!doctype html><html><head><title>Metabase</title></head><body>" + body + "</body></html>"))
}
