// Package proxy is gatehouse's data plane. For every request it builds one
// canonical view (host, path), strips every header a client could use to
// forge identity or the request's target, routes, and forwards with
// httputil.ReverseProxy's Rewrite hook (never Director, so a Connection
// header cannot delete what gatehouse sets). Identity and policy plug in
// between routing and forwarding.
//
// The Handler expects to run inside audit.Handler: it fills in the request's
// audit.Record and never emits one itself.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/canon"
	"github.com/gatehouse-proxy/gatehouse/internal/idheader"
	"github.com/gatehouse-proxy/gatehouse/internal/listener"
	"github.com/gatehouse-proxy/gatehouse/internal/route"
	"github.com/gatehouse-proxy/gatehouse/internal/upstream"
)

// Reason codes this package puts in audit records.
const (
	ReasonBadHost         = "bad-host"         // the Host header cannot be canonicalized
	ReasonBadPath         = "bad-path"         // the path cannot be canonicalized
	ReasonNoRoute         = "no-route"         // no route matches host and path
	ReasonVerdictOnly     = "verdict-only"     // the route has no upstream: it answers SPOE and forward-auth only
	ReasonMethod          = "method-refused"   // TRACE and CONNECT are never forwarded
	ReasonUpgrade         = "upgrade-refused"  // protocol upgrades other than WebSocket on a route that allows it
	ReasonNoPolicy        = "no-policy"        // forwarded: the route has no access policy yet
	ReasonInternal        = "internal"         // served by gatehouse itself (/.gatehouse/...)
	ReasonNotFoundGH      = "unknown-endpoint" // an unknown /.gatehouse/ path
	ReasonBodyReadTimeout = "body-read-timeout"
)

// Route is a route with everything needed to forward on it.
type Route struct {
	// Name identifies the route in audit records and metrics.
	Name string
	// Host and Path are the match: see package route.
	Host, Path string
	// Upstream receives the requests. A route without one only answers
	// verdicts (SPOE, forward-auth); proxied requests on it get 404.
	Upstream *upstream.Upstream
	// PreserveHost sends the client's Host instead of the target's.
	PreserveHost bool
	// Timeouts limit the upstream's answer on this route.
	Timeouts Timeouts
	// WebSocket allows Upgrade: websocket on the route. The guard admits
	// the upgrade (before the 101) and bounds the connection's life to the
	// user's session. Every other upgrade (h2c, ...) is refused with 400.
	WebSocket bool
	// Guard decides who may use the route and sets the identity headers.
	// A route without one forwards every request (reason no-policy); the
	// application always sets one.
	Guard Guard

	rp      *httputil.ReverseProxy
	idNames []string // Guard.HeaderNames()
}

// Guard is the access check of a route (package auth implements it).
type Guard interface {
	// Admit runs after routing, with the canonical host and path. It
	// returns the request to forward, with the identity headers (named by
	// HeaderNames) set on its Header; or answers w itself and returns
	// nil. For a WebSocket upgrade, the returned request's context ends
	// when the user's session does, which closes the tunnel.
	Admit(w http.ResponseWriter, r *http.Request, host, path string) *http.Request
	// HeaderNames lists the headers Admit may set, in canonical form.
	HeaderNames() []string
}

// ResponseChecker is implemented by a Guard that looks at the upstream's
// response before it goes to the client (package auth: the app session of
// a Metabase route).
type ResponseChecker interface {
	CheckResponse(resp *http.Response)
}

// Internal serves gatehouse's own endpoints (/.gatehouse/... and
// /.well-known/gatehouse/...) besides the health checks.
type Internal interface {
	// ServeInternal serves path, or reports false for an unknown one.
	ServeInternal(w http.ResponseWriter, r *http.Request, host, path string) bool
	// OwnCookie reports whether a cookie name is gatehouse's: upstreams
	// may not set such cookies.
	OwnCookie(name string) bool
}

// Headers names the headers gatehouse sets upstream.
type Headers struct {
	RequestID string
}

// Options configures a Handler.
type Options struct {
	Routes []*Route
	// Stripper removes inbound identity headers.
	Stripper *idheader.Stripper
	// Trusted are the proxies whose forwarding headers are believed.
	Trusted listener.Trust
	Headers Headers
	// HSTS is the Strict-Transport-Security value for TLS responses; "" for none.
	HSTS string
	// BodyReadTimeout bounds reading a request body. 0 means none.
	BodyReadTimeout time.Duration
	// Ready reports readiness for /.gatehouse/readyz.
	Ready func() bool
	// Internal serves gatehouse's endpoints; nil serves only the health
	// checks.
	Internal Internal
	// Log is the operator log.
	Log *slog.Logger
}

// Handler is the proxy. It is immutable once built; a configuration reload
// builds a new one.
type Handler struct {
	opts    Options
	routes  *route.Table[*Route]
	ids     *idheader.RequestIDs
	errLog  *log.Logger
	bufPool BufferPool
}

// New builds the routing table and one ReverseProxy per route.
func New(opts Options) (*Handler, error) {
	if opts.Stripper == nil {
		return nil, errors.New("proxy: Stripper is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Ready == nil {
		opts.Ready = func() bool { return true }
	}
	if opts.Headers.RequestID == "" {
		opts.Headers.RequestID = "X-Request-Id"
	}
	opts.Headers.RequestID = http.CanonicalHeaderKey(opts.Headers.RequestID)
	h := &Handler{opts: opts}
	h.errLog = slog.NewLogLogger(opts.Log.Handler(), slog.LevelWarn)
	h.ids = idheader.NewRequestIDs()
	entries := make([]route.Entry[*Route], 0, len(opts.Routes))
	for _, rt := range opts.Routes {
		if rt.Upstream != nil {
			rt.rp = h.reverseProxy(rt)
		}
		if rt.Guard != nil {
			rt.idNames = rt.Guard.HeaderNames()
		}
		entries = append(entries, route.Entry[*Route]{Host: rt.Host, Path: rt.Path, Value: rt})
	}
	t, err := route.New(entries)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	h.routes = t
	return h, nil
}

func (h *Handler) reverseProxy(rt *Route) *httputil.ReverseProxy {
	var transport http.RoundTripper = rt.Upstream
	if rt.Timeouts.ResponseHeader > 0 || rt.Timeouts.Idle > 0 {
		transport = &timeoutTransport{next: rt.Upstream, header: rt.Timeouts.ResponseHeader, idle: rt.Timeouts.Idle}
	}
	return &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { h.rewrite(pr, rt) },
		Transport:      transport,
		ModifyResponse: func(resp *http.Response) error { return h.modifyResponse(resp, rt) },
		ErrorHandler:   func(w http.ResponseWriter, r *http.Request, err error) { h.upstreamError(w, r, err) },
		BufferPool:     &h.bufPool,
		ErrorLog:       h.errLog,
	}
}

// ServeHTTP canonicalizes, strips, routes and forwards one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := audit.FromContext(r.Context())
	conn := listener.ConnOf(r)
	trusted := h.opts.Trusted.Contains(conn.Peer)
	client := conn.Client
	if trusted {
		client = idheader.ClientIP(conn.Client, r.Header["X-Forwarded-For"], h.opts.Trusted.Contains)
	}
	rec.ClientIP = client

	// The request ID is believed only from a trusted proxy. It is set on the
	// inbound request (after stripping, since its name may be in the
	// X-Gatehouse- namespace) so that Rewrite forwards it, and echoed to the
	// client.
	id := ""
	if trusted {
		if v := r.Header.Get(h.opts.Headers.RequestID); idheader.ValidRequestID(v) {
			id = v
		}
	}
	if id == "" {
		id = h.ids.Next()
	}
	rec.RequestID = id
	h.opts.Stripper.Strip(r.Header)
	ids := []string{id} // shared: neither side modifies it in place
	r.Header[h.opts.Headers.RequestID] = ids
	w.Header()[h.opts.Headers.RequestID] = ids
	// TLS to gatehouse, or to the front end that says so in its PROXY
	// header (HAProxy terminating TLS).
	tlsIn := r.TLS != nil || conn.TLS != nil
	if tlsIn {
		rec.TLS = true
	}
	if tlsIn && h.opts.HSTS != "" {
		w.Header()["Strict-Transport-Security"] = []string{h.opts.HSTS}
	}

	host, err := canon.Host(r.Host, tlsIn)
	if err != nil {
		rec.Host = truncate(r.Host, 256)
		h.deny(w, r, http.StatusBadRequest, ReasonBadHost)
		return
	}
	rec.Host = host
	r.Host = host // the canonical host is what PreserveHost and X-Forwarded-Host send
	path, err := canon.Path(r.URL.EscapedPath())
	if err != nil {
		rec.Path = truncate(r.URL.EscapedPath(), 256) // as sent, still escaped
		h.deny(w, r, http.StatusBadRequest, ReasonBadPath)
		return
	}
	rec.Path = path

	if r.Method == http.MethodTrace || r.Method == http.MethodConnect {
		h.deny(w, r, http.StatusMethodNotAllowed, ReasonMethod)
		return
	}
	upgrade := r.Header.Get("Upgrade")
	if upgrade != "" && (!isWebSocket(r) || IsInternalPath(path)) {
		h.deny(w, r, http.StatusBadRequest, ReasonUpgrade)
		return
	}
	if IsInternalPath(path) {
		h.serveInternal(w, r, host, path)
		return
	}

	rt, ok := h.routes.Match(host, path)
	if !ok {
		h.deny(w, r, http.StatusNotFound, ReasonNoRoute)
		return
	}
	rec.Route = rt.Name
	if rt.Upstream == nil {
		h.deny(w, r, http.StatusNotFound, ReasonVerdictOnly)
		return
	}
	rec.Upstream = rt.Upstream.Name()
	if upgrade != "" && !rt.WebSocket {
		h.deny(w, r, http.StatusBadRequest, ReasonUpgrade)
		return
	}
	rec.Decision = audit.DecisionAllow
	rec.Reason = ReasonNoPolicy

	// One canonical path is routed, checked by policy and forwarded.
	if path != r.URL.EscapedPath() {
		r.URL.Path = canon.Decode(path)
		r.URL.RawPath = path
	}
	setForwarded(r, conn, trusted)
	if rt.Guard != nil {
		if r = rt.Guard.Admit(w, r, host, path); r == nil {
			return
		}
	}
	if h.opts.BodyReadTimeout > 0 && r.Body != nil && r.Body != http.NoBody {
		r = limitBodyRead(w, r, h.opts.BodyReadTimeout)
	}
	// ReverseProxy aborts with http.ErrAbortHandler when copying the
	// response fails midway; if that is because the client went away, the
	// audit record says 499 client-gone.
	if rt.Timeouts.Total > 0 {
		ctx, cancel := context.WithTimeoutCause(r.Context(), rt.Timeouts.Total, errTotalTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	completed := false
	defer func() {
		if completed || rec.Status != 0 || r.Context().Err() == nil {
			return
		}
		if errors.Is(context.Cause(r.Context()), errTotalTimeout) {
			rec.Decision = audit.DecisionError
			rec.Reason = ReasonTotalTimeout
			return
		}
		rec.Status = 499
		rec.Decision = audit.DecisionError
		rec.Reason = audit.ReasonClientGone
	}()
	rt.rp.ServeHTTP(w, r)
	completed = true
}

// rewrite builds the outbound request. Hop-by-hop headers (and any header
// the client named in Connection) are already gone from pr.Out, so what is
// set here reaches the upstream.
func (h *Handler) rewrite(pr *httputil.ProxyRequest, rt *Route) {
	in, out := pr.In, pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = "upstream" // the Upstream round tripper picks the target
	if rt.PreserveHost {
		out.Host = in.Host
	} else {
		out.Host = ""
	}
	// ServeHTTP decided these from the connection's trust (setForwarded);
	// httputil dropped them from out before calling Rewrite.
	out.Header["X-Forwarded-For"] = in.Header["X-Forwarded-For"]
	out.Header["X-Forwarded-Proto"] = in.Header["X-Forwarded-Proto"]
	out.Header["X-Forwarded-Host"] = in.Header["X-Forwarded-Host"]
	out.Header[h.opts.Headers.RequestID] = in.Header[h.opts.Headers.RequestID]
	// The identity headers the guard set: copied again, since a header the
	// client named in Connection was dropped from out.
	for _, name := range rt.idNames {
		if v, ok := in.Header[name]; ok {
			out.Header[name] = v
		} else {
			delete(out.Header, name)
		}
	}
}

// IsInternalPath reports whether a canonical path is one of gatehouse's own
// (/.gatehouse/..., /.well-known/gatehouse/...), which no route serves.
func IsInternalPath(path string) bool {
	return path == "/.gatehouse" || strings.HasPrefix(path, "/.gatehouse/") || strings.HasPrefix(path, "/.well-known/gatehouse/")
}

// setForwarded replaces the inbound X-Forwarded-For, -Proto and -Host with
// the values to send upstream: appended to and believed only when the peer
// is a trusted proxy, replaced otherwise. r.Host is already canonical.
func setForwarded(r *http.Request, conn listener.Conn, trusted bool) {
	prior := r.Header["X-Forwarded-For"]
	client := conn.Client
	if conn.Proxied && trusted && len(prior) > 0 && lastElement(prior) == conn.Client.String() {
		// HAProxy already appended the client it announced in the PROXY
		// header (option forwardfor): do not list it twice. (A zero
		// address adds nothing to the chain.)
		client = netip.Addr{}
	}
	r.Header["X-Forwarded-For"] = []string{idheader.ForwardedFor(prior, client, trusted)}
	proto := "http"
	tlsKnown := r.TLS != nil || conn.TLS != nil
	if tlsKnown {
		// TLS to gatehouse, or the PROXY header's ssl TLV: the front
		// end's own word beats any X-Forwarded-Proto.
		proto = "https"
	}
	fwdHost := r.Host
	if trusted {
		if v := r.Header.Get("X-Forwarded-Proto"); !tlsKnown && (v == "http" || v == "https") {
			proto = v
		}
		if v := r.Header.Get("X-Forwarded-Host"); v != "" {
			if ch, err := canon.Host(v, proto == "https"); err == nil {
				fwdHost = ch
			}
		}
	}
	if proto == "https" {
		r.Header["X-Forwarded-Proto"] = protoHTTPS
	} else {
		r.Header["X-Forwarded-Proto"] = protoHTTP
	}
	r.Header["X-Forwarded-Host"] = []string{fwdHost}
}

// isWebSocket reports whether r asks for a WebSocket upgrade (RFC 6455
// §4.1): GET, Upgrade: websocket and Connection naming upgrade.
func isWebSocket(r *http.Request) bool {
	if r.Method != http.MethodGet || len(r.Header["Upgrade"]) != 1 || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// protoHTTP and protoHTTPS are shared header values: header values are
// replaced, never modified in place, by net/http and by gatehouse.
var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

func lastElement(vals []string) string {
	v := vals[len(vals)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}

func (h *Handler) modifyResponse(resp *http.Response, rt *Route) error {
	rec := audit.FromContext(resp.Request.Context())
	// Identity headers are gatehouse's to set, in both directions.
	for k := range resp.Header {
		if len(k) >= len("X-Gatehouse-") && strings.EqualFold(k[:len("X-Gatehouse-")], "X-Gatehouse-") {
			delete(resp.Header, k)
		}
	}
	if h.opts.Internal != nil {
		stripOwnCookies(resp.Header, h.opts.Internal.OwnCookie)
	}
	if rc, ok := rt.Guard.(ResponseChecker); ok {
		rc.CheckResponse(resp)
	}
	if h.opts.HSTS != "" && rec.TLS {
		// gatehouse's policy (already on the response) replaces the app's.
		delete(resp.Header, "Strict-Transport-Security")
	}
	return nil
}

var errTotalTimeout = errors.New("route total timeout")

// upstreamError answers a failed round trip: 502 when the target could not
// be reached, 504 when it did not answer in time, nothing when the client
// has gone (499 in the audit record).
func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	rec := audit.FromContext(r.Context())
	var te *upstream.TargetError
	if errors.As(err, &te) {
		rec.Target = te.Target.Name
	}
	// A body read timeout is decided first: net/http cancels the request
	// context on the read error, so the transport may report only that.
	status, reason := http.StatusRequestTimeout, ReasonBodyReadTimeout
	switch {
	case bodyTimedOut(r) || errors.Is(err, errBodyReadTimeout):
	case errors.Is(context.Cause(r.Context()), errTotalTimeout):
		status, reason = http.StatusGatewayTimeout, ReasonTotalTimeout
	default:
		status, reason = upstream.Classify(r.Context(), err)
	}
	rec.Decision = audit.DecisionError
	rec.Reason = reason
	if status == 499 {
		rec.Status = 499
		return
	}
	// The cause can quote what the target sent (a malformed status line):
	// bound it so a broken or hostile upstream cannot flood the log.
	h.opts.Log.Warn("upstream request failed", "request_id", rec.RequestID, "route", rec.Route,
		"target", rec.Target, "reason", reason, "err", truncate(err.Error(), 300))
	if status == http.StatusServiceUnavailable {
		// No target could take it (all down, or every connection and queue
		// slot taken): ask the client to come back shortly.
		w.Header().Set("Retry-After", "5")
	}
	writeError(w, r, status, rec.RequestID)
}

func (h *Handler) deny(w http.ResponseWriter, r *http.Request, status int, reason string) {
	rec := audit.FromContext(r.Context())
	rec.Decision = audit.DecisionDeny
	rec.Reason = reason
	writeError(w, r, status, rec.RequestID)
}

func (h *Handler) serveInternal(w http.ResponseWriter, r *http.Request, host, path string) {
	rec := audit.FromContext(r.Context())
	rec.Route = "gatehouse"
	rec.Decision = audit.DecisionAllow
	rec.Reason = ReasonInternal
	switch path {
	case "/.gatehouse/healthz":
		Healthz(w, r)
	case "/.gatehouse/readyz":
		Readyz(h.opts.Ready)(w, r)
	default:
		if h.opts.Internal != nil && h.opts.Internal.ServeInternal(w, r, host, path) {
			return
		}
		h.deny(w, r, http.StatusNotFound, ReasonNotFoundGH)
	}
}

// stripOwnCookies removes Set-Cookie lines of an upstream response that
// would set one of gatehouse's cookies (a session fixation attempt by, or
// through, the app).
func stripOwnCookies(hdr http.Header, own func(string) bool) {
	sc := hdr["Set-Cookie"]
	for i, line := range sc {
		name, _, _ := strings.Cut(line, "=")
		if !own(strings.TrimSpace(name)) {
			continue
		}
		// Found one: copy the others (the common case, none, allocates
		// nothing).
		kept := append([]string(nil), sc[:i]...)
		for _, l := range sc[i+1:] {
			n, _, _ := strings.Cut(l, "=")
			if !own(strings.TrimSpace(n)) {
				kept = append(kept, l)
			}
		}
		if len(kept) == 0 {
			delete(hdr, "Set-Cookie")
		} else {
			hdr["Set-Cookie"] = kept
		}
		return
	}
}

// Healthz answers 200 while the process serves requests.
func Healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// Readyz answers 200 when ready() holds (configuration loaded, listeners
// up, not shutting down) and 503 otherwise.
func Readyz(ready func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready\n")
			return
		}
		io.WriteString(w, "ready\n")
	}
}

// BufferPool is an httputil.BufferPool of 32 KiB copy buffers, ready at
// its zero value. It pools array pointers, so returning a buffer allocates
// nothing.
type BufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (bp *BufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[copyBufferSize]byte); ok {
		return b[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (bp *BufferPool) Put(b []byte) {
	if cap(b) >= copyBufferSize {
		bp.p.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
	}
}

// Match returns the route for a canonical host and path.
func (h *Handler) Match(host, path string) (*Route, bool) { return h.routes.Match(host, path) }

// ServesHost reports whether some route serves the canonical host, on any
// path (for the HTTP→HTTPS redirect listener).
func (h *Handler) ServesHost(host string) bool { return h.routes.HasHost(host) }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Observer returns the upstream.Options.Observe hook that records the
// chosen target and upstream time in the request's audit record and passes
// them to metric (which may be nil).
func Observer(metric func(route, upstream string, d time.Duration)) func(*http.Request, string, time.Duration) {
	return func(req *http.Request, target string, d time.Duration) {
		rec := audit.FromContext(req.Context())
		if rec == nil {
			return // gatehouse's own call to an upstream (Metabase sign-in)
		}
		rec.Target = target
		rec.UpstreamDuration = d
		if metric != nil {
			metric(rec.Route, rec.Upstream, d)
		}
	}
}
