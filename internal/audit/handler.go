package audit

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"
	"unicode/utf8"
)

// maxFieldLen caps the default Method, Host and Path that Handler copies from
// the request, so one request cannot make a huge record.
const maxFieldLen = 2048

type ctxKey struct{}

// FromContext returns the request's Record for inner handlers to fill in
// (route, decision, reason, identity and so on). It is never nil inside
// [Handler]; outside it, it returns nil. The Record belongs to the request
// and is reused once Handler has emitted it: do not keep it, or use it from a
// goroutine, past the handler's return. For the same reason nothing that lets
// an inner handler outlive ServeHTTP (http.TimeoutHandler, for one) may sit
// between Handler and the code that fills in the record.
func FromContext(ctx context.Context) *Record {
	r, _ := ctx.Value(ctxKey{}).(*Record)
	return r
}

// Handler wraps next so that every request produces exactly one Record,
// emitted to l in a defer, also when next panics.
//
// Before calling next, Handler sets the record's Time, Method, Proto, TLS and
// ClientIP (from RemoteAddr), and defaults for Host (the Host header) and Path
// (the URL path without the query, at most 2,048 bytes) that the proxy
// overwrites with canonical values. After next returns it sets Status (the
// value next stored in Record.Status if any, such as 499 for a client that
// went away, else the status written, else 200; 101 for a hijacked
// connection), Bytes and Duration, and sets Decision to "error" if it is
// empty and the status is 500 or above.
//
// The ResponseWriter next receives records the status and counts body bytes.
// Informational 1xx statuses other than 101 do not count as the final status.
// It implements http.Flusher and Hijack directly and has Unwrap, so
// http.NewResponseController reaches the real writer's Flush, Hijack,
// SetReadDeadline, SetWriteDeadline and EnableFullDuplex.
//
// If next panics, Handler writes "500 internal error" if nothing was written
// yet, sets Decision "error" and Reason "panic", logs the panic value and
// stack to Options.Log (never request headers), emits the record and returns
// normally. If the response had already started, it instead re-panics with
// http.ErrAbortHandler so that net/http aborts the connection and the client
// cannot mistake a truncated body for a complete one. A panic with
// http.ErrAbortHandler itself is re-raised after the record is emitted, as
// httputil.ReverseProxy intends; its reason is "aborted" unless one was set.
//
// While l.Err() is non-nil, Handler fails closed: it answers 503 without
// calling next, and the record has Decision "error" and Reason
// "audit-unavailable".
func Handler(l *Logger, next http.Handler) http.Handler {
	if l == nil || next == nil {
		panic("audit: Handler needs a Logger and a handler")
	}
	return &handler{l: l, next: next}
}

type handler struct {
	l    *Logger
	next http.Handler
}

// state is the per-request data Handler pools: the record and the writer.
type state struct {
	rec Record
	w   responseWriter
}

var statePool = sync.Pool{New: func() any { return new(state) }}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := statePool.Get().(*state)
	st.rec = Record{
		Time:   start,
		Method: truncate(r.Method, maxFieldLen),
		Host:   truncate(r.Host, maxFieldLen),
		Path:   truncate(r.URL.Path, maxFieldLen),
		Proto:  r.Proto,
		TLS:    r.TLS != nil,
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		st.rec.ClientIP = ap.Addr().Unmap()
	}
	st.w = responseWriter{rw: w}
	defer h.finish(st, start)

	if h.l.unhealthy.Load() {
		st.rec.Decision = DecisionError
		st.rec.Reason = ReasonAuditUnavailable
		writePlain(&st.w, http.StatusServiceUnavailable, "service unavailable\n")
		return
	}
	h.next.ServeHTTP(&st.w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, &st.rec)))
}

// finish completes and emits the record. It is deferred by ServeHTTP and so
// runs also when next panics; it must call recover itself.
func (h *handler) finish(st *state, start time.Time) {
	p := recover()
	rec, w := &st.rec, &st.w
	rethrow := false
	if p != nil {
		abort := p == http.ErrAbortHandler //nolint:errorlint // a panic value, compared as net/http does
		wrote500 := false
		if !w.wroteHeader && !w.hijacked {
			// Headers next set before panicking (cookies, for one) must not
			// ride on the error response.
			clear(w.Header())
			writePlain(w, http.StatusInternalServerError, "internal error\n")
			wrote500 = true
			rec.Status = http.StatusInternalServerError
		}
		if abort {
			if rec.Reason == "" {
				rec.Reason = ReasonAborted
			}
			rethrow = true
		} else {
			rec.Decision = DecisionError
			rec.Reason = ReasonPanic
			h.l.log.Error("panic serving request",
				"request_id", rec.RequestID, "method", rec.Method, "host", rec.Host, "path", rec.Path,
				"panic", p, "stack", string(debug.Stack()))
			// A response already under way cannot turn into an error; abort
			// it rather than let net/http finish it as if it were complete.
			rethrow = !wrote500 && !w.hijacked
		}
	}
	if rec.Status == 0 {
		rec.Status = w.finalStatus()
	}
	rec.Bytes = w.bytes
	rec.Duration = time.Since(start)
	if rec.Decision == "" && rec.Status >= 500 {
		rec.Decision = DecisionError
	}
	h.l.Emit(rec)

	*st = state{} // drop references to the request before pooling
	statePool.Put(st)
	if rethrow {
		panic(http.ErrAbortHandler)
	}
}

// writePlain writes a short text/plain response.
func writePlain(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	// A rune starts at most UTFMax-1 bytes before a continuation byte.
	for i > 0 && i > n-(utf8.UTFMax-1) && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// responseWriter records the status and counts body bytes for the record.
type responseWriter struct {
	rw          http.ResponseWriter
	status      int   // the final status, once wroteHeader
	bytes       int64 // body bytes written
	wroteHeader bool  // a final status was written (or implied by Write or Flush)
	hijacked    bool  // the connection was hijacked through this writer
}

// Header returns the underlying writer's header map.
func (w *responseWriter) Header() http.Header { return w.rw.Header() }

// WriteHeader passes code on and records the first final status. 1xx
// statuses other than 101 are informational (RFC 9110, section 15.2) and may
// precede the final one.
func (w *responseWriter) WriteHeader(code int) {
	w.rw.WriteHeader(code) // first: it panics on an invalid code
	if w.wroteHeader || w.hijacked {
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		return
	}
	w.status, w.wroteHeader = code, true
}

// Write passes p on and counts the bytes written; a Write before WriteHeader
// implies 200, as in net/http.
func (w *responseWriter) Write(p []byte) (int, error) {
	w.implyOK()
	n, err := w.rw.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Flush flushes the underlying writer, if it can. httputil.ReverseProxy and
// server-sent events rely on it.
func (w *responseWriter) Flush() {
	_ = w.FlushError()
}

// FlushError flushes the underlying writer and returns its error;
// http.ResponseController prefers it to Flush.
func (w *responseWriter) FlushError() error {
	w.implyOK() // flushing commits the header
	return http.NewResponseController(w.rw).Flush()
}

// Hijack hijacks the underlying connection, as http.Hijacker. It reports
// an error wrapping http.ErrNotSupported when the underlying writer cannot
// (HTTP/2). Implemented here rather than only through Unwrap so that the
// record knows the connection switched protocols.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.rw).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, brw, err
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.rw }

func (w *responseWriter) implyOK() {
	if !w.wroteHeader && !w.hijacked {
		w.status, w.wroteHeader = http.StatusOK, true
	}
}

// finalStatus is the status the client received: what was written, 101 for
// a connection hijacked before any status, or 200, which net/http sends when
// a handler writes nothing.
func (w *responseWriter) finalStatus() int {
	switch {
	case w.wroteHeader:
		return w.status
	case w.hijacked:
		return http.StatusSwitchingProtocols
	default:
		return http.StatusOK
	}
}
