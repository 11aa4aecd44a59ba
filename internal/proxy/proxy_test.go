package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/idheader"
	"github.com/gatehouse-proxy/gatehouse/internal/upstream"
)

// newTestProxy returns gatehouse's public handler (audit around proxy) for
// one catch-all route to target, writing audit records to auditOut.
func newTestProxy(tb testing.TB, target string, auditOut io.Writer) http.Handler {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	up, err := upstream.New(upstream.Options{Name: "app", Targets: []*url.URL{u}, Observe: Observer(nil)})
	if err != nil {
		tb.Fatal(err)
	}
	st, err := idheader.NewStripper(idheader.Options{Names: []string{"X-Gatehouse-User"}})
	if err != nil {
		tb.Fatal(err)
	}
	h, err := New(Options{
		Routes:   []*Route{{Name: "app", Path: "/", Upstream: up}, {Name: "api", Host: "api.test", Path: "/v1", Upstream: up}},
		Stripper: st,
		Log:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	al, err := audit.New(audit.Options{Output: "stdout", Stdout: auditOut})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { al.Close() })
	return audit.Handler(al, h)
}

func echoUpstream(tb testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "request_uri": r.RequestURI, "headers": r.Header, "host": r.Host})
	}))
	tb.Cleanup(srv.Close)
	return srv
}

type echoed struct {
	Path       string              `json:"path"`
	RequestURI string              `json:"request_uri"`
	Host       string              `json:"host"`
	Headers    map[string][]string `json:"headers"`
}

func TestCanonicalPathIsForwarded(t *testing.T) {
	up := echoUpstream(t)
	h := newTestProxy(t, up.URL, io.Discard)
	tests := []struct {
		name, target, wantPath, wantURI string
	}{
		{"dot segments", "/a/b/../c/./d", "/a/c/d", "/a/c/d"},
		{"double slash", "//a///b?q=1", "/a/b", "/a/b?q=1"},
		{"encoded unreserved decoded", "/%61dmin", "/admin", "/admin"},
		{"encoded dot dot resolved", "/x/%2e%2e/admin", "/admin", "/admin"},
		{"reserved escape kept", "/a%3fb", "/a?b", "/a%3Fb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://app.test"+tc.target, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var got echoed
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Path != tc.wantPath || got.RequestURI != tc.wantURI {
				t.Errorf("upstream saw path %q request-target %q; want %q and %q", got.Path, got.RequestURI, tc.wantPath, tc.wantURI)
			}
		})
	}
}

func TestEncodedSeparatorRefusedBeforeRouting(t *testing.T) {
	up := echoUpstream(t)
	var audited strings.Builder
	h := newTestProxy(t, up.URL, &audited)
	for _, target := range []string{"/a%2Fb", "/a%5cb", "/admin;x=1", "/a%00"} {
		req := httptest.NewRequest(http.MethodGet, "http://app.test/", nil)
		req.URL.RawPath, req.URL.Path = target, mustUnescape(t, target)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d; want 400", target, rec.Code)
		}
	}
}

func mustUnescape(t *testing.T, s string) string {
	t.Helper()
	u, err := url.PathUnescape(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestTraceAndUpgradeRefused(t *testing.T) {
	up := echoUpstream(t)
	h := newTestProxy(t, up.URL, io.Discard)
	req := httptest.NewRequest(http.MethodTrace, "http://app.test/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("TRACE: status %d; want 405", rec.Code)
	}
	req = httptest.NewRequest(http.MethodGet, "http://app.test/", nil)
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	req.Header.Set("Upgrade", "h2c")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("h2c upgrade: status %d; want 400", rec.Code)
	}
}

func TestResponseIdentityHeadersStripped(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Gatehouse-User", "upstream-says")
		w.Header().Set("x-gatehouse-email", "e@x")
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	h := newTestProxy(t, up.URL, io.Discard)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://app.test/", nil))
	for k := range rec.Header() {
		if strings.HasPrefix(strings.ToLower(k), "x-gatehouse-") {
			t.Errorf("response carries %s", k)
		}
	}
}

func TestErrorPageByAccept(t *testing.T) {
	h := newTestProxy(t, "http://127.0.0.1:1", io.Discard) // nothing listens on port 1
	req := httptest.NewRequest(http.MethodGet, "http://app.test/x", nil)
	req.Header.Set("Accept", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d; want 502", rec.Code)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("JSON error body: %v: %s", err, rec.Body)
	}
	if body["request_id"] == "" || strings.Contains(rec.Body.String(), "127.0.0.1") {
		t.Errorf("unsafe or incomplete body: %s", rec.Body)
	}
	req.Header.Set("Accept", "text/html,application/json;q=0.9")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q; want HTML", ct)
	}
	if strings.Contains(rec.Body.String(), "dial") || strings.Contains(rec.Body.String(), "127.0.0.1") {
		t.Errorf("error page leaks the internal cause: %s", rec.Body)
	}
}

// BenchmarkServeHTTP measures the whole data plane for one request: audit
// record, canonicalization, header stripping, routing, rewrite, and a real
// round trip to a loopback upstream (whose cost is included).
func BenchmarkServeHTTP(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello, world\n"))
	}))
	defer up.Close()
	h := newTestProxy(b, up.URL, io.Discard)
	req := browserRequest("http://app.test/dashboard/12")
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.Clone(context.Background()))
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkServeHTTPNoForward measures everything before forwarding
// (audit, canonicalize, strip) plus a small internal answer, with no
// upstream: /.gatehouse/healthz.
func BenchmarkServeHTTPNoForward(b *testing.B) {
	h := newTestProxy(b, "http://127.0.0.1:1", io.Discard)
	req := browserRequest("http://app.test/.gatehouse/healthz")
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.Clone(context.Background()))
	}
}

func browserRequest(target string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range map[string]string{
		"Accept":          "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"Accept-Encoding": "gzip, deflate, br",
		"Accept-Language": "en-US,en;q=0.5",
		"Cookie":          "metabase.DEVICE=abc; other=1",
		"User-Agent":      "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		"Sec-Fetch-Dest":  "document",
		"Sec-Fetch-Mode":  "navigate",
		"Sec-Fetch-Site":  "none",
		"Referer":         "https://app.test/",
		"Cache-Control":   "max-age=0",
	} {
		req.Header.Set(k, v)
	}
	return req
}
