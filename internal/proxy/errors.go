package proxy

import (
	"html/template"
	"net/http"
	"strconv"
	"strings"
)

// publicMessage is what a client is told for a status: never the internal
// cause, which goes to the operator log and the audit record.
func publicMessage(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "The request could not be understood."
	case http.StatusNotFound:
		return "There is nothing here."
	case http.StatusMethodNotAllowed:
		return "This method is not allowed."
	case http.StatusRequestTimeout:
		return "The request was not received in time."
	case http.StatusBadGateway:
		return "The application could not be reached."
	case http.StatusServiceUnavailable:
		return "The application is unavailable. Try again shortly."
	case http.StatusGatewayTimeout:
		return "The application did not answer in time."
	}
	return http.StatusText(status)
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Status}} {{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}code{background:#f3f3f3;padding:.1rem .3rem}</style></head>
<body><main><h1>{{.Status}} {{.Title}}</h1><p>{{.Message}}</p>
<p>Request ID: <code>{{.RequestID}}</code></p></main></body></html>
`))

// wantsJSON reports whether the client prefers JSON to HTML: an Accept that
// names application/json (or any +json type) before text/html, or no HTML
// at all with a JSON-ish content type.
func wantsJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	j := strings.Index(accept, "json")
	if j < 0 {
		return false
	}
	h := strings.Index(accept, "text/html")
	return h < 0 || j < h
}

// writeError sends a small, safe error page (HTML or JSON by Accept) that
// carries the request ID so a user can quote it to an operator.
func writeError(w http.ResponseWriter, r *http.Request, status int, requestID string) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Del("Content-Length")
	msg := publicMessage(status)
	if wantsJSON(r) {
		hdr.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		// requestID is hex or a validated token: no JSON escaping needed,
		// but quote it through strconv to be safe.
		w.Write([]byte(`{"status":` + strconv.Itoa(status) + `,"error":` + strconv.Quote(http.StatusText(status)) +
			`,"message":` + strconv.Quote(msg) + `,"request_id":` + strconv.Quote(requestID) + "}\n"))
		return
	}
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	errorPage.Execute(w, struct {
		Status                    int
		Title, Message, RequestID string
	}{status, http.StatusText(status), msg, requestID})
}
