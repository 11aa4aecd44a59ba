package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// newServer starts an HTTP/1.1 test server running Handler around next.
func newServer(t *testing.T, c *capture, next http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(c.l, next))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string, error) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// TestExactlyOneRecordPerRequest runs every way a handler can end and checks
// that each request yields exactly one record with the expected outcome.
func TestExactlyOneRecordPerRequest(t *testing.T) {
	type want struct {
		status   int
		bytes    int64
		decision string
		reason   string
	}
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int    // seen by the client; 0 if the client sees an aborted response
		wantBody   string // seen by the client
		want       want
		wantPanic  bool // a panic appears in the operator log
	}{
		{
			name:       "200",
			handler:    func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") },
			wantStatus: 200, wantBody: "hello",
			want: want{status: 200, bytes: 5},
		},
		{
			name:       "nothing written is 200",
			handler:    func(w http.ResponseWriter, r *http.Request) {},
			wantStatus: 200,
			want:       want{status: 200},
		},
		{
			name:       "404",
			handler:    http.NotFound,
			wantStatus: 404, wantBody: "404 page not found\n",
			want: want{status: 404, bytes: 19},
		},
		{
			name: "inner handler fills in the record",
			handler: func(w http.ResponseWriter, r *http.Request) {
				rec := FromContext(r.Context())
				rec.Route, rec.Decision, rec.Reason = "r1", DecisionDeny, "group-denied"
				w.WriteHeader(http.StatusForbidden)
			},
			wantStatus: 403,
			want:       want{status: 403, decision: DecisionDeny, reason: "group-denied"},
		},
		{
			name: "status set by inner handler wins",
			handler: func(w http.ResponseWriter, r *http.Request) {
				rec := FromContext(r.Context())
				rec.Status, rec.Reason = 499, ReasonClientGone
				w.WriteHeader(http.StatusBadGateway)
			},
			wantStatus: 502,
			want:       want{status: 499, reason: ReasonClientGone},
		},
		{
			name:       "5xx defaults decision to error",
			handler:    func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) },
			wantStatus: 502,
			want:       want{status: 502, decision: DecisionError},
		},
		{
			name: "5xx keeps a decision that was set",
			handler: func(w http.ResponseWriter, r *http.Request) {
				FromContext(r.Context()).Decision = DecisionAllow
				w.WriteHeader(http.StatusGatewayTimeout)
			},
			wantStatus: 504,
			want:       want{status: 504, decision: DecisionAllow},
		},
		{
			name: "1xx is not the final status",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", "</style.css>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
				w.WriteHeader(http.StatusNoContent)
			},
			wantStatus: 204,
			want:       want{status: 204},
		},
		{
			name: "panic before writing",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Set-Cookie", "session=leaked")
				panic("boom")
			},
			wantStatus: 500, wantBody: "internal error\n",
			want:      want{status: 500, bytes: 15, decision: DecisionError, reason: ReasonPanic},
			wantPanic: true,
		},
		{
			name: "panic overrides an allow decision and a planned status",
			handler: func(w http.ResponseWriter, r *http.Request) {
				rec := FromContext(r.Context())
				rec.Decision, rec.Status = DecisionAllow, 502
				panic(errors.New("boom"))
			},
			wantStatus: 500, wantBody: "internal error\n",
			want:      want{status: 500, bytes: 15, decision: DecisionError, reason: ReasonPanic},
			wantPanic: true,
		},
		{
			name: "panic after writing aborts the response",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
				panic("boom")
			},
			wantStatus: 0,
			want:       want{status: 200, bytes: 7, decision: DecisionError, reason: ReasonPanic},
			wantPanic:  true,
		},
		{
			name: "ErrAbortHandler after writing",
			handler: func(w http.ResponseWriter, r *http.Request) {
				FromContext(r.Context()).Decision = DecisionAllow
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			},
			wantStatus: 0,
			want:       want{status: 200, bytes: 7, decision: DecisionAllow, reason: ReasonAborted},
		},
		{
			name:       "ErrAbortHandler before writing",
			handler:    func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) },
			wantStatus: 0,
			want:       want{status: 500, bytes: 15, decision: DecisionError, reason: ReasonAborted},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCapture(t)
			srv := newServer(t, c, tt.handler)
			resp, body, err := get(t, srv, "/p")
			if tt.wantStatus == 0 {
				if err == nil {
					t.Errorf("client read a complete response (status %d, body %q), want an aborted one", resp.StatusCode, body)
				}
			} else {
				if err != nil {
					t.Fatalf("GET: %v", err)
				}
				if resp.StatusCode != tt.wantStatus || body != tt.wantBody {
					t.Errorf("client got %d %q, want %d %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
				}
				if resp.Header.Get("Set-Cookie") != "" {
					t.Errorf("error response carries Set-Cookie %q set before the panic", resp.Header.Get("Set-Cookie"))
				}
			}
			c.waitEmitted(t, 1)
			srv.Close()
			recs := c.records(t)
			if len(recs) != 1 {
				t.Fatalf("got %d records, want exactly 1: %+v", len(recs), recs)
			}
			r := recs[0]
			got := want{status: r.Status, bytes: r.Bytes, decision: r.Decision, reason: r.Reason}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("record mismatch (-want +got):\n%s", diff)
			}
			if r.Method != "GET" || r.Path != "/p" || r.Proto != "HTTP/1.1" || r.TLS || r.ClientIP != "127.0.0.1" {
				t.Errorf("request fields wrong: %+v", r)
			}
			if !strings.HasPrefix(r.Host, "127.0.0.1:") {
				t.Errorf("host = %q", r.Host)
			}
			op := c.opLog.String()
			if got := strings.Contains(op, "panic serving request"); got != tt.wantPanic {
				t.Errorf("operator log has panic = %v, want %v: %s", got, tt.wantPanic, op)
			}
			if tt.wantPanic && (!strings.Contains(op, "boom") || !strings.Contains(op, "handler_test.go")) {
				t.Errorf("operator log lacks the panic value or stack: %s", op)
			}
		})
	}
}

// TestHijackedConnectionRecordedOnce hijacks through http.ResponseController,
// as httputil.ReverseProxy does for upgrades.
func TestHijackedConnectionRecordedOnce(t *testing.T) {
	c := newCapture(t)
	srv := newServer(t, c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString(line)
		brw.Flush()
		if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrHijacked) {
			t.Errorf("Write after Hijack = %v, want ErrHijacked", err)
		}
	}))
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nping\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response: %v, %v", resp, err)
	}
	if echo, _ := br.ReadString('\n'); echo != "ping\n" {
		t.Errorf("echo = %q", echo)
	}
	c.waitEmitted(t, 1)
	recs := c.records(t)
	if len(recs) != 1 || recs[0].Status != 101 || recs[0].Path != "/ws" || recs[0].Host != "example" {
		t.Errorf("records = %+v, want one with status 101", recs)
	}
}

// TestReverseProxyUpgradeThroughHandler runs httputil.ReverseProxy's
// protocol switch through the wrapper, as the proxy will for WebSockets.
func TestReverseProxyUpgradeThroughHandler(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("upstream Hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }}

	c := newCapture(t)
	srv := newServer(t, c, rp)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /socket HTTP/1.1\r\nHost: example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response: %v, %v", resp, err)
	}
	fmt.Fprintf(conn, "hi\n")
	if echo, _ := br.ReadString('\n'); echo != "echo hi\n" {
		t.Errorf("echo = %q", echo)
	}
	conn.Close()
	c.waitEmitted(t, 1)
	recs := c.records(t)
	if len(recs) != 1 || recs[0].Status != 101 || recs[0].Path != "/socket" {
		t.Errorf("records = %+v, want one with status 101", recs)
	}
}

// TestFlushReachesClientBeforeHandlerReturns streams through the wrapper with
// each way of flushing and checks the client sees each chunk while the
// handler is still running.
func TestFlushReachesClientBeforeHandlerReturns(t *testing.T) {
	flushers := map[string]func(http.ResponseWriter){
		"http.Flusher":       func(w http.ResponseWriter) { w.(http.Flusher).Flush() },
		"ResponseController": func(w http.ResponseWriter) { http.NewResponseController(w).Flush() },
	}
	for name, flush := range flushers {
		t.Run(name, func(t *testing.T) {
			c := newCapture(t)
			seen := make(chan struct{})
			srv := newServer(t, c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "data: one\n\n")
				flush(w)
				select {
				case <-seen:
				case <-time.After(10 * time.Second):
					t.Error("client did not see the flushed event while the handler ran")
					return
				}
				io.WriteString(w, "data: two\n\n")
			}))
			resp, err := srv.Client().Get(srv.URL + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			if line, err := br.ReadString('\n'); err != nil || line != "data: one\n" {
				t.Fatalf("first line = %q, %v", line, err)
			}
			close(seen)
			rest, _ := io.ReadAll(br)
			if string(rest) != "\ndata: two\n\n" {
				t.Errorf("rest = %q", rest)
			}
			srv.Close()
			recs := c.records(t)
			if len(recs) != 1 || recs[0].Status != 200 || recs[0].Bytes != 22 {
				t.Errorf("records = %+v, want one 200 with 22 bytes", recs)
			}
		})
	}
}

// TestFlushBeforeWriteRecords200 checks that flushing commits the header.
func TestFlushBeforeWriteRecords200(t *testing.T) {
	c := newCapture(t)
	srv := newServer(t, c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		w.WriteHeader(http.StatusTeapot) // superfluous: the header is already sent
	}))
	resp, _, err := get(t, srv, "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", resp, err)
	}
	srv.Close()
	if recs := c.records(t); len(recs) != 1 || recs[0].Status != 200 {
		t.Errorf("records = %+v", recs)
	}
}

// TestResponseControllerReachesRealWriter checks the deadline and full-duplex
// methods through Unwrap.
func TestResponseControllerReachesRealWriter(t *testing.T) {
	c := newCapture(t)
	srv := newServer(t, c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for name, err := range map[string]error{
			"SetReadDeadline":  rc.SetReadDeadline(time.Now().Add(time.Minute)),
			"SetWriteDeadline": rc.SetWriteDeadline(time.Now().Add(time.Minute)),
			"EnableFullDuplex": rc.EnableFullDuplex(),
		} {
			if err != nil {
				t.Errorf("%s through the wrapper: %v", name, err)
			}
		}
	}))
	if _, _, err := get(t, srv, "/"); err != nil {
		t.Fatal(err)
	}
}

func TestHTTP2(t *testing.T) {
	c := newCapture(t)
	srv := httptest.NewUnstartedServer(Handler(c.l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := http.NewResponseController(w).Hijack(); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("Hijack on HTTP/2 = %v, want ErrNotSupported", err)
		}
		io.WriteString(w, "h2")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush on HTTP/2: %v", err)
		}
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("client used %s", resp.Proto)
	}
	srv.Close()
	recs := c.records(t)
	if len(recs) != 1 || recs[0].Proto != "HTTP/2.0" || !recs[0].TLS || recs[0].Status != 200 || recs[0].Bytes != 2 {
		t.Errorf("records = %+v", recs)
	}
}

// TestQueryAndCredentialsNeverLogged sends a known token in the query, the
// Authorization header and a cookie, on a normal and a panicking request, and
// searches the audit stream and the operator log for it.
func TestQueryAndCredentialsNeverLogged(t *testing.T) {
	const token = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.sig"
	c := newCapture(t)
	srv := newServer(t, c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
	}))
	for _, p := range []string{"/ok", "/panic"} {
		req, _ := http.NewRequest("GET", srv.URL+p+"?access_token="+token+"&x=1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.AddCookie(&http.Cookie{Name: "__Host-gatehouse", Value: token})
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	srv.Close()
	recs := c.records(t)
	if len(recs) != 2 || recs[0].Path != "/ok" || recs[1].Path != "/panic" {
		t.Fatalf("records = %+v", recs)
	}
	for name, out := range map[string]string{"audit stream": c.out.String(), "operator log": c.opLog.String()} {
		for _, s := range []string{token, "access_token", "c2VjcmV0LXRva2VuLXZhbHVl"} {
			if strings.Contains(out, s) {
				t.Errorf("%s contains %q: %s", name, s, out)
			}
		}
	}
}

func TestDefaultFieldsTruncated(t *testing.T) {
	c := newCapture(t)
	h := Handler(c.l, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	long := "/" + strings.Repeat("a", maxFieldLen-2) + "é" // é straddles the limit
	req := httptest.NewRequest("GET", "http://example.com"+long+"?q=1", nil)
	h.ServeHTTP(httptest.NewRecorder(), req)
	recs := c.records(t)
	if len(recs) != 1 {
		t.Fatalf("got %d records", len(recs))
	}
	if got := recs[0].Path; got != long[:maxFieldLen-1] {
		t.Errorf("path has %d bytes (%q...), want %d without splitting é", len(got), got[len(got)-4:], maxFieldLen-1)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"aé", 2, "a"},
		{"a😀", 4, "a"},
		{"a😀", 5, "a😀"},
		{"\x80\x80\x80\x80\x80", 4, "\x80"}, // invalid UTF-8: backs off at most three bytes
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestFromContextOutsideHandler(t *testing.T) {
	if r := FromContext(context.Background()); r != nil {
		t.Errorf("FromContext outside Handler = %v, want nil", r)
	}
}

func TestConcurrentRequestsOneRecordEach(t *testing.T) {
	c := newCapture(t)
	srv := newServer(t, c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).RequestID = r.URL.Query().Get("id")
		if r.URL.Query().Get("panic") != "" {
			panic("boom")
		}
		io.WriteString(w, "ok")
	}))
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			q := fmt.Sprintf("/?id=%d", i)
			if i%10 == 0 {
				q += "&panic=1"
			}
			if _, _, err := get(t, srv, q); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	srv.Close()
	recs := c.records(t)
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.RequestID]++
	}
	for i := range n {
		if k := seen[fmt.Sprint(i)]; k != 1 {
			t.Errorf("request %d has %d records", i, k)
		}
	}
	if len(recs) != n {
		t.Errorf("got %d records, want %d", len(recs), n)
	}
}

func TestHandlerRejectsNil(t *testing.T) {
	c := newCapture(t)
	for name, f := range map[string]func(){
		"nil logger":  func() { Handler(nil, http.NotFoundHandler()) },
		"nil handler": func() { Handler(c.l, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

// discardWriter is a minimal http.ResponseWriter for benchmarks.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func BenchmarkHandler(b *testing.B) {
	l, err := New(Options{Output: "stdout", Stdout: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	body := []byte("ok")
	h := Handler(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := FromContext(r.Context())
		rec.Route, rec.Decision = "app", DecisionAllow
		w.Write(body)
	}))
	req := httptest.NewRequest("GET", "http://app.example.com/api/items/42?page=2", nil)
	req.RemoteAddr = "203.0.113.7:51234"
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
