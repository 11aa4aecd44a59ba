package auth

import (
	"crypto/subtle"
	"encoding/json"
	"html/template"
	"net/http"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
)

// pageCSP allows nothing but the page's own inline style: the pages load
// no scripts, images or fonts, and may not be framed.
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"

var pages = template.Must(template.New("layout").Parse(`{{define "layout"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}code{background:#f3f3f3;padding:.1rem .3rem}
a.button,button{display:inline-block;font:inherit;padding:.5rem 1rem;margin:.25rem 0;border:1px solid #456;border-radius:.3rem;background:#f6f8fa;color:#123;text-decoration:none;cursor:pointer}
a.button:focus,button:focus{outline:3px solid #69c}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}</style></head>
<body><main>{{template "body" .}}</main></body></html>{{end}}

{{define "chooser"}}<h1>Sign in</h1><p>Choose how to sign in:</p>
<ul>{{range .Data.Options}}<li><a class="button" href="{{.URL}}">{{.Name}}</a></li>{{end}}</ul>{{end}}

{{define "denied"}}<h1>403 Access denied</h1>
<p>{{if .Data.Who}}You are signed in as <strong>{{.Data.Who}}</strong>, but you{{else}}You{{end}} may not open this page.</p>
<dl><dt>Reason</dt><dd><code>{{.Data.Reason}}</code></dd>{{if .Data.Rule}}<dt>Rule</dt><dd><code>{{.Data.Rule}}</code></dd>{{end}}
<dt>Request ID</dt><dd><code>{{.RequestID}}</code></dd></dl>
<p>If you need access, ask an administrator and quote the request ID.</p>
{{if .Data.Who}}<form method="post" action="/.gatehouse/logout"><button type="submit">Sign in as someone else</button></form>{{end}}{{end}}

{{define "error"}}<h1>{{.Data.Status}} {{.Data.StatusText}}</h1><p>{{.Data.Message}}</p>
<dl>{{if .Data.Reason}}<dt>Reason</dt><dd><code>{{.Data.Reason}}</code></dd>{{end}}<dt>Request ID</dt><dd><code>{{.RequestID}}</code></dd></dl>
<p><a href="/">Go to the start page</a></p>{{end}}

{{define "logout"}}<h1>Sign out</h1><p>Sign out of gatehouse?</p>
<form method="post" action="/.gatehouse/logout"><button type="submit">Sign out</button></form>{{end}}

{{define "loggedout"}}<h1>Signed out</h1><p>You are signed out.</p><p><a class="button" href="/">Sign in again</a></p>{{end}}

{{define "me"}}<h1>Signed in</h1><dl>
<dt>User</dt><dd>{{.Data.Me.username}}</dd><dt>Name</dt><dd>{{.Data.Me.name}}</dd><dt>Email</dt><dd>{{.Data.Me.email}}</dd>
<dt>Groups</dt><dd>{{range $i, $g := .Data.Me.groups}}{{if $i}}, {{end}}{{$g}}{{end}}</dd>
<dt>Issuer</dt><dd><code>{{.Data.Me.issuer}}</code></dd><dt>Subject</dt><dd><code>{{.Data.Me.subject}}</code></dd>
<dt>Signed in with</dt><dd>{{.Data.Me.auth_method}}{{if .Data.Me.provider}} ({{.Data.Me.provider}}){{end}}</dd></dl>
<form method="post" action="/.gatehouse/logout"><button type="submit">Sign out</button></form>{{end}}
`))

var pageTitles = map[string]string{
	"chooser": "Sign in", "denied": "Access denied", "error": "Error", "logout": "Sign out",
	"loggedout": "Signed out", "me": "Signed in",
}

// pageSets holds, for each page, the layout with its "body" bound to that
// page, built once: serving a page (a 403 under load) clones nothing.
var pageSets = func() map[string]*template.Template {
	m := make(map[string]*template.Template, len(pageTitles))
	for name := range pageTitles {
		t := template.Must(pages.Clone())
		m[name] = template.Must(t.New("body").Parse(`{{template "` + name + `" .}}`))
	}
	return m
}()

// writePage renders one of the pages in the common layout.
func (g *Gate) writePage(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	t, ok := pageSets[name]
	if !ok { // not reached: the page names are fixed
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	title := pageTitles[name]
	if e, ok := data.(map[string]any); ok && e["Title"] != nil {
		title, _ = e["Title"].(string)
	}
	t.ExecuteTemplate(w, "layout", map[string]any{
		"Title": title, "Data": data, "RequestID": recordOf(r.Context()).RequestID,
	})
}

// writeError answers with a small error page or JSON, carrying the reason
// code and request ID but never an internal cause.
func (g *Gate) writeError(w http.ResponseWriter, r *http.Request, status int, msg, reason string) {
	rec := recordOf(r.Context())
	if rec.Decision == "" || rec.Decision == audit.DecisionAllow {
		if status >= 500 {
			rec.Decision = audit.DecisionError
		} else {
			rec.Decision = audit.DecisionDeny
		}
	}
	if reason != "" {
		rec.Reason = reason
	}
	if wantsJSON(r) || r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		writeJSON(w, status, map[string]any{
			"status": status, "error": http.StatusText(status), "message": msg,
			"reason": reason, "request_id": rec.RequestID,
		})
		return
	}
	g.writePage(w, r, status, "error", map[string]any{
		"Title": http.StatusText(status), "Status": status, "StatusText": http.StatusText(status),
		"Message": msg, "Reason": reason,
	})
}

// writeDenied is the 403 page: who the user is, why, the rule and the
// request ID.
func (g *Gate) writeDenied(w http.ResponseWriter, r *http.Request, out *Outcome) {
	rec := recordOf(r.Context())
	who := ""
	if p := out.Principal; p != nil {
		who = p.Email
		if who == "" {
			who = p.Username
		}
		if who == "" {
			who = p.Subject
		}
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusForbidden, map[string]any{
			"status": http.StatusForbidden, "error": "Forbidden", "message": "Access denied.",
			"reason": out.Reason, "rule": out.Rule, "user": who, "request_id": rec.RequestID,
		})
		return
	}
	g.writePage(w, r, http.StatusForbidden, "denied", map[string]any{"Who": who, "Reason": out.Reason, "Rule": out.Rule})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// wantsJSON reports whether the client prefers JSON to HTML (the same rule
// as the proxy's error pages).
func wantsJSON(r *http.Request) bool { return acceptsJSON(r.Header.Get("Accept")) }

// acceptsJSON reports whether an Accept value prefers JSON to HTML.
func acceptsJSON(accept string) bool {
	j := strings.Index(accept, "json")
	if j < 0 {
		return false
	}
	h := strings.Index(accept, "text/html")
	return h < 0 || j < h
}

func constantEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
