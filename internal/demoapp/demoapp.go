// Package demoapp is the small upstream application that ships with
// gatehouse for the quickstart, the examples and the benchmarks. It shows
// the request it received exactly as gatehouse forwarded it: the method,
// the path, the client address gatehouse reported and every header, so a
// user can see which identity and forwarding headers an application gets.
package demoapp

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Handler returns the demo application without assertion checks.
func Handler() http.Handler { return New(Options{}) }

// New returns the demo application:
//
//	/hello        a 13-byte plain-text body (for load tests)
//	/stream       server-sent events: ?n= events (default 5), ?every= interval (default 200ms)
//	/headers.json the request as JSON
//	anything else the request as an HTML page (or JSON when Accept asks for it)
//
// With opts.JWKSURL set, the page and the JSON report whether gatehouse's
// signed assertion verifies.
func New(opts Options) http.Handler {
	if opts.AssertionHeader == "" {
		opts.AssertionHeader = "X-Gatehouse-Assertion"
	}
	var v *verifier
	if opts.JWKSURL != "" {
		v = &verifier{opts: opts, client: &http.Client{Timeout: 5 * time.Second}}
	}
	describe := func(r *http.Request) Request {
		d := describeRequest(r)
		if v != nil {
			d.Assertion = v.verify(r)
		}
		return d
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(hello)
	})
	mux.HandleFunc("/stream", stream)
	mux.HandleFunc("/headers.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, describe(r))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept"), "json") {
			writeJSON(w, describe(r))
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		page.Execute(w, describe(r))
	})
	return mux
}

var hello = []byte("hello, world\n")

// Request is what the demo app reports about a request.
type Request struct {
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	RawPath    string              `json:"raw_path,omitempty"`
	Query      string              `json:"query,omitempty"`
	RemoteAddr string              `json:"remote_addr"`
	Headers    map[string][]string `json:"headers"`
	Identity   map[string]string   `json:"identity"`
	Assertion  *Verified           `json:"assertion,omitempty"`
}

func describeRequest(r *http.Request) Request {
	d := Request{
		Method:     r.Method,
		Host:       r.Host,
		Path:       r.URL.Path,
		RawPath:    r.URL.RawPath,
		Query:      r.URL.RawQuery,
		RemoteAddr: r.RemoteAddr,
		Headers:    map[string][]string{},
		Identity:   map[string]string{},
	}
	for k, v := range r.Header {
		d.Headers[k] = v
		if strings.HasPrefix(strings.ToLower(k), "x-gatehouse-") {
			d.Identity[k] = strings.Join(v, ", ")
		}
	}
	return d
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func stream(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	if n <= 0 || n > 10000 {
		n = 5
	}
	every, err := time.ParseDuration(r.URL.Query().Get("every"))
	if err != nil || every < 0 || every > time.Minute {
		every = 200 * time.Millisecond
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	t := time.NewTicker(max(every, time.Millisecond))
	defer t.Stop()
	for i := range n {
		fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
		if err := rc.Flush(); err != nil {
			return
		}
		if i == n-1 {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

type headerRow struct {
	Name   string
	Values []string
}

// Rows returns the headers sorted by name, for the page.
func (d Request) Rows() []headerRow {
	rows := make([]headerRow, 0, len(d.Headers))
	for k, v := range d.Headers {
		rows = append(rows, headerRow{k, v})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>gatehouse demo app</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
code{word-break:break-all}.id{background:#eef6ee}</style></head>
<body><main>
<h1>gatehouse demo app</h1>
<p>This application sits behind gatehouse. Below is the request exactly as it arrived here.</p>
<h2>Identity</h2>
{{if .Identity}}<table>{{range $k, $v := .Identity}}<tr class="id"><th>{{$k}}</th><td><code>{{$v}}</code></td></tr>{{end}}</table>
{{else}}<p id="identity-none">No identity headers: nobody is signed in on this request (a public path).</p>{{end}}
{{with .Assertion}}{{if .OK}}<p id="assertion-ok">&#10004; The signed assertion verifies with gatehouse's keys: <strong>{{.Email}}</strong> (subject <code>{{.Subject}}</code>), groups {{range $i, $g := .Groups}}{{if $i}}, {{end}}{{$g}}{{end}}; valid until {{.Expires}}.</p>
{{else}}<p id="assertion-bad">&#10008; The assertion does not verify: {{.Error}}</p>{{end}}{{end}}
<h2>Request</h2>
<table>
<tr><th>Method</th><td><code>{{.Method}}</code></td></tr>
<tr><th>Host</th><td><code>{{.Host}}</code></td></tr>
<tr><th>Path</th><td><code>{{.Path}}</code></td></tr>
<tr><th>Peer</th><td><code>{{.RemoteAddr}}</code></td></tr>
</table>
<h2>Headers</h2>
<table>{{range .Rows}}<tr><th>{{.Name}}</th><td>{{range .Values}}<code>{{.}}</code><br>{{end}}</td></tr>{{end}}</table>
</main></body></html>
`))
