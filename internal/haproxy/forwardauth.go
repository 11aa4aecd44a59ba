package haproxy

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/idheader"
	"github.com/gatehouse-proxy/gatehouse/internal/listener"
)

// PathForwardAuth is the forward-auth endpoint.
const PathForwardAuth = "/.gatehouse/auth"

// HeaderCookie is the forward-auth response header holding the client's
// Cookie header without gatehouse's cookies (possibly empty), sent on 200
// whenever the request had cookies.
const HeaderCookie = "X-Gatehouse-Cookie"

// Reasons of the forward-auth endpoint.
const (
	// ReasonUntrustedCaller: the caller is not in trusted_proxies, so the
	// request it describes cannot be believed.
	ReasonUntrustedCaller = "untrusted-caller"
	// ReasonIncomplete: X-Forwarded-Host or the original URI is missing
	// or malformed.
	ReasonIncomplete = "forward-auth-incomplete"
	// ReasonNotCanonical: the original path is not in canonical form.
	// The front end forwards the path it has, so gatehouse cannot make
	// the policy's path and the app's path one, and refuses.
	ReasonNotCanonical = "non-canonical-path"
)

// ForwardAuthOptions configures a ForwardAuth.
type ForwardAuthOptions struct {
	// Route finds a request's route in the running configuration.
	// Required.
	Route Router
	// Trusted reports whether a caller (nginx, Traefik, Caddy, HAProxy)
	// may describe requests. Required.
	Trusted func(netip.Addr) bool
	// RequestID is the request ID header, believed from trusted callers.
	// Default: X-Request-Id.
	RequestID string
}

// ForwardAuth is the forward-auth endpoint for front ends that route
// themselves and ask gatehouse first: nginx auth_request, Traefik
// forwardAuth, Caddy forward_auth, HAProxy's Lua auth-request. The caller
// describes the original request in X-Forwarded-Method, X-Forwarded-Host,
// X-Forwarded-Uri (or X-Original-URL) and X-Forwarded-Proto, and passes the
// client's Cookie and Authorization headers. The answer is 200 with the
// identity headers to copy onto the upstream request; 401 (with
// WWW-Authenticate) for programs; 302 to sign in for browsers (401 with
// the same Location when the query has redirect=false, for nginx, which
// only accepts 2xx, 401 and 403 from an auth subrequest); 403 when policy
// refuses. It serves inside audit.Handler: the record describes the
// original request, with via forward-auth.
type ForwardAuth struct {
	opts ForwardAuthOptions
	ids  *idheader.RequestIDs // for callers that send no request ID
}

// NewForwardAuth validates opts and returns a ForwardAuth.
func NewForwardAuth(opts ForwardAuthOptions) (*ForwardAuth, error) {
	if opts.Route == nil || opts.Trusted == nil {
		return nil, errors.New("haproxy: ForwardAuthOptions.Route and Trusted are required")
	}
	if opts.RequestID == "" {
		opts.RequestID = "X-Request-Id"
	}
	opts.RequestID = http.CanonicalHeaderKey(opts.RequestID)
	return &ForwardAuth{opts: opts, ids: idheader.NewRequestIDs()}, nil
}

func (fa *ForwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := audit.FromContext(r.Context())
	if rec == nil {
		rec = &audit.Record{}
	}
	rec.Via = audit.ViaForwardAuth
	rec.Route = "gatehouse"
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	conn := listener.ConnOf(r)
	if !fa.opts.Trusted(conn.Peer) {
		rec.ClientIP = conn.Client
		rec.Decision, rec.Reason = audit.DecisionDeny, ReasonUntrustedCaller
		http.Error(w, "forward-auth answers trusted proxies only", http.StatusForbidden)
		return
	}
	id := r.Header.Get(fa.opts.RequestID)
	if !idheader.ValidRequestID(id) {
		id = fa.ids.Next()
	}
	rec.RequestID = id
	h.Set(fa.opts.RequestID, id)

	q, ok := fa.query(r, conn)
	if !ok {
		rec.Decision, rec.Reason = audit.DecisionDeny, ReasonIncomplete
		http.Error(w, "forward-auth needs X-Forwarded-Host and X-Forwarded-Uri (or X-Original-URL)", http.StatusBadRequest)
		return
	}
	rec.Route = "" // from here on, the record is about the original request
	v := decide(r.Context(), fa.opts.Route, q, rec, false)
	if v.Path != "" && v.Allow {
		// Canonical but not as sent: refuse (see ReasonNotCanonical).
		v = v.overrule(rec, http.StatusBadRequest, ReasonNotCanonical)
	}
	for _, c := range v.SetCookies {
		http.SetCookie(w, c)
	}
	if v.Allow {
		for _, hd := range v.Headers {
			h[hd.Name] = []string{hd.Value}
		}
		if q.Cookie != "" {
			// The caller copies it onto the request for the app (nginx:
			// auth_request_set and proxy_set_header Cookie; Caddy:
			// copy_headers X-Gatehouse-Cookie>Cookie), so the app never
			// sees gatehouse's session cookie. Sent even when unchanged,
			// since such a copy replaces the header.
			h[HeaderCookie] = []string{v.Cookie}
		}
		rec.Decision = audit.DecisionAllow
		w.WriteHeader(http.StatusOK)
		return
	}
	rec.Decision = audit.DecisionDeny
	switch v.Status {
	case http.StatusFound:
		rec.Decision = audit.DecisionRedirect
		h.Set("Location", v.Location)
		if r.URL.Query().Get("redirect") == "false" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusFound)
		return
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", v.WWWAuthenticate)
	}
	if v.Status >= 500 {
		rec.Decision = audit.DecisionError
	}
	http.Error(w, http.StatusText(v.Status), v.Status)
}

// query reads the original request from the trusted caller's headers.
func (fa *ForwardAuth) query(r *http.Request, conn listener.Conn) (*Query, bool) {
	hd := r.Header
	q := &Query{
		Method:        hd.Get("X-Forwarded-Method"),
		Host:          hd.Get("X-Forwarded-Host"),
		Cookie:        strings.Join(hd["Cookie"], "; "),
		Authorization: hd.Get("Authorization"),
		TLS:           strings.EqualFold(hd.Get("X-Forwarded-Proto"), "https") || (r.TLS != nil || conn.TLS != nil) && hd.Get("X-Forwarded-Proto") == "",
		Source:        idheader.ClientIP(conn.Client, hd["X-Forwarded-For"], fa.opts.Trusted),
	}
	if q.Method == "" {
		q.Method = r.Method
	}
	uri := hd.Get("X-Forwarded-Uri")
	if uri == "" {
		if orig := hd.Get("X-Original-URL"); orig != "" {
			u, err := url.Parse(orig)
			if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
				return q, false
			}
			if q.Host == "" {
				q.Host = u.Host
			}
			if hd.Get("X-Forwarded-Proto") == "" {
				q.TLS = u.Scheme == "https"
			}
			uri = u.RequestURI()
		}
	}
	uri, _, _ = strings.Cut(uri, "#")
	if q.Host == "" || !strings.HasPrefix(uri, "/") {
		return q, false
	}
	q.Path, q.RawQuery, _ = strings.Cut(uri, "?")
	q.API = auth.IsAPI(q.Method, hd.Get("Accept"), hd.Get("Sec-Fetch-Mode"), hd.Get("X-Requested-With"))
	return q, true
}
