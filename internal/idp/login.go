package idp

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// loginCSS is the login page's only style; the Content-Security-Policy
// allows exactly this text by its hash.
const loginCSS = `body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f4f5;color:#18181b}
main{max-width:22rem;margin:10vh auto;padding:2rem;background:#fff;border:1px solid #d4d4d8;border-radius:8px}
h1{font-size:1.4rem;margin:0 0 1rem}
label{display:block;margin-top:1rem;font-weight:600}
input{box-sizing:border-box;width:100%;padding:.5rem;font:inherit;border:1px solid #71717a;border-radius:4px}
input:focus,button:focus{outline:3px solid #2563eb;outline-offset:1px}
button{margin-top:1.5rem;width:100%;padding:.6rem;font:inherit;font-weight:600;color:#fff;background:#1d4ed8;border:0;border-radius:4px;cursor:pointer}
.error{color:#b91c1c;background:#fef2f2;border:1px solid #fecaca;padding:.5rem;border-radius:4px}`

var loginCSSHash = func() string {
	sum := sha256.Sum256([]byte(loginCSS))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}}</title>
<style>{{.Style}}</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
{{- if .Error}}
<p class="error" id="login-error" role="alert">{{.Error}}</p>
{{- end}}
{{- if .ID}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="id" value="{{.ID}}">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus value="{{.Username}}"{{if .Error}} aria-describedby="login-error"{{end}}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
{{- else}}
<p>{{.Message}}</p>
{{- end}}
</main>
</body>
</html>
`))

type pageData struct {
	Title    string
	Style    template.CSS
	Error    string // shown as an alert above the form
	Message  string // the text of a page without a form
	ID       string // the auth request ID; the form is shown when set
	Action   string
	Username string
}

// Messages shown on the login page. They say nothing about which part of
// the credentials was wrong or whether the user exists.
const (
	msgInvalid    = "Invalid username or password."
	msgLimited    = "Too many failed sign-in attempts. Try again later."
	msgExpired    = "This sign-in link is invalid or has expired. Go back to the application and sign in again."
	msgLoggedOut  = "You have been signed out."
	msgForbidden  = "This sign-in request did not come from the sign-in page. Go back to the application and sign in again."
	msgBadRequest = "The sign-in request could not be read. Go back to the application and sign in again."
)

// loginCookie names the cookie that binds an auth request to the browser
// that was shown its login form: a login POST is only accepted with it
// (login CSRF). One cookie per auth request, so parallel logins in two
// tabs do not clobber each other.
func loginCookie(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "gatehouse_idp_login_" + hex.EncodeToString(sum[:8])
}

// render writes a page with the headers every provider page carries:
// no caching, no framing, no referrer, and a CSP that allows only the
// inline style and form posts to the provider and formAction.
func (p *Provider) render(w http.ResponseWriter, status int, d pageData, formAction string) {
	d.Style = template.CSS(loginCSS) //nolint:gosec // G203: a constant, allowed by its hash in the CSP
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		p.log.Error("idp: rendering page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	fa := "'none'"
	if formAction != "" {
		fa = "'self'"
		if formAction != "'self'" {
			fa += " " + formAction
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src "+loginCSSHash+"; form-action "+fa+"; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// origin returns scheme://host of an absolute URL, or "".
func origin(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

func (p *Provider) serveLogin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		p.showLogin(w, r)
	case http.MethodPost:
		p.postLogin(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (p *Provider) expired(w http.ResponseWriter) {
	p.render(w, http.StatusBadRequest, pageData{Title: "Sign in", Message: msgExpired}, "")
}

func (p *Provider) showLogin(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	ar, cookie, ok := p.store.beginLogin(id)
	if !ok {
		p.expired(w)
		return
	}
	// Secure whenever the issuer is https; an http issuer (the loopback
	// quickstart) could not use a Secure cookie at all.
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: see above
		Name:     loginCookie(id),
		Value:    cookie,
		Path:     p.base + pathLogin,
		MaxAge:   int(authRequestTTL / time.Second),
		HttpOnly: true,
		Secure:   p.secure,
		SameSite: http.SameSiteStrictMode,
	})
	p.render(w, http.StatusOK, pageData{
		Title: "Sign in", ID: id, Action: p.base + pathLogin, Username: ar.loginHint,
	}, p.formAction(ar))
}

// formAction is the CSP form-action source list for a login form: the
// provider itself and the origin of the client's redirect_uri, since
// browsers apply form-action to the redirect that follows the POST.
func (p *Provider) formAction(ar *authRequest) string {
	if o := origin(ar.redirectURI); o != "" && o != origin(p.issuer) {
		return o
	}
	return "'self'"
}

func (p *Provider) postLogin(w http.ResponseWriter, r *http.Request) {
	// Fetch metadata (https://www.w3.org/TR/fetch-metadata/): a browser
	// marks a POST from another site. The cookie binding below stops
	// those anyway; this refuses them before any password check.
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		p.render(w, http.StatusForbidden, pageData{Title: "Sign in", Message: msgForbidden}, "")
		return
	}
	if err := r.ParseForm(); err != nil {
		p.render(w, http.StatusBadRequest, pageData{Title: "Sign in", Message: msgBadRequest}, "")
		return
	}
	id := r.PostForm.Get("id")
	username := r.PostForm.Get("username")
	password := r.PostForm.Get("password")
	var cookie string
	if c, err := r.Cookie(loginCookie(id)); err == nil {
		cookie = c.Value
	}
	ar, ok := p.store.pendingLogin(id, cookie)
	if !ok {
		p.expired(w)
		return
	}
	form := pageData{Title: "Sign in", ID: id, Action: p.base + pathLogin, Username: username}
	ip := p.clientIP(r)
	allowed, retry := p.limiter.Allow(username, ip)
	if !allowed {
		p.log.Warn("idp login rate limited", "client_ip", ip, "client", ar.clientID)
		w.Header().Set("Retry-After", retryAfter(retry))
		form.Error = msgLimited
		p.render(w, http.StatusTooManyRequests, form, p.formAction(ar))
		return
	}
	u, err := p.users.Load().Check(username, password)
	if err != nil {
		p.limiter.Failure(username, ip)
		// The typed username is not logged: users sometimes type their
		// password into it.
		p.log.Info("idp login failed", "client_ip", ip, "client", ar.clientID)
		form.Error = msgInvalid
		p.render(w, http.StatusUnauthorized, form, p.formAction(ar))
		return
	}
	p.limiter.Success(username, ip)
	done, ok := p.store.completeLogin(id, cookie, u)
	if !ok {
		p.expired(w)
		return
	}
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure as above; this deletes the cookie
		Name: loginCookie(id), Value: "", Path: p.base + pathLogin, MaxAge: -1,
		HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteStrictMode,
	})
	p.log.Info("idp login", "user", u.Username, "client", ar.clientID, "client_ip", ip)
	// Issue the code and redirect to the client here rather than through
	// op's /authorize/callback?id=..., which is not served: the code goes
	// only to the browser that logged in.
	op.AuthResponse(done, p.op, w, r.WithContext(op.ContextWithIssuer(r.Context(), p.issuer)))
}

// retryAfter formats a Retry-After value in whole seconds, rounded up.
func retryAfter(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

func (p *Provider) serveLoggedOut(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p.render(w, http.StatusOK, pageData{Title: "Signed out", Message: msgLoggedOut}, "")
}
