// The acceptance tests run gatehouse in-process on loopback, in front of
// httptest upstreams, and check what a client, the upstream, the audit
// stream and the operator log see. Security tests are named after the
// attack they stop (security-notes §5, §7).
package app_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// oneRoute is a configuration with one plain listener named "public", the
// admin listener, and one route for any host to target. extra is appended as
// more top-level YAML.
func oneRoute(target, extra string) string {
	return fmt.Sprintf(`
listeners:
  - name: public
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
upstreams:
  app:
    targets: [%s]
routes:
  - name: app
    upstream: app
    policy: {public: ["/"]}
%s`, target, extra)
}

// isGeneratedID reports whether s looks like a request ID gatehouse made
// (32 hex digits).
func isGeneratedID(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// forgedHeaders are identity, "original URL" and method-override headers a
// client might send, in spellings Go would not produce itself. Every one must
// be gone before the upstream sees the request.
var forgedHeaders = []string{
	"X-Gatehouse-User: mallory",
	"x-gatehouse-email: mallory@evil.test",
	"X_Gatehouse_Groups: admins",
	"x_forwarded_user: mallory",
	"Remote-User: mallory",
	"Remote-User: root",
	"X-Forwarded-Email: mallory@evil.test",
	"X-Auth-Request-User: mallory",
	"X-WEBAUTH-USER: mallory",
	"X-Original-URL: /admin",
	"X-Forwarded-Uri: /admin",
	"X-Rewrite-URL: /admin",
	"X-HTTP-Method-Override: DELETE",
}

// forbiddenUpstream are the folded names none of which may reach the
// upstream.
var forbiddenUpstream = []string{
	"x-gatehouse-user", "x-gatehouse-email", "x-gatehouse-groups", "x-forwarded-user",
	"remote-user", "x-forwarded-email", "x-auth-request-user", "x-webauth-user",
	"x-original-url", "x-forwarded-uri", "x-rewrite-url", "x-http-method-override",
}

func checkNoForgedHeaders(t *testing.T, e echoed) {
	t.Helper()
	got := foldedNames(e.Header)
	for _, name := range forbiddenUpstream {
		if got[name] {
			t.Errorf("upstream received forged header %s: %q", name, e.Header)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "x-gatehouse-") {
			t.Errorf("upstream received a header in gatehouse's namespace: %s", k)
		}
	}
	for k, vs := range e.Header {
		for _, v := range vs {
			if strings.Contains(v, "mallory") {
				t.Errorf("upstream received forged value in %s: %q", k, v)
			}
		}
	}
	if e.Method != http.MethodGet || e.Path != "/who" {
		t.Errorf("upstream acted on %s %s, want GET /who", e.Method, e.Path)
	}
}

func TestForgedIdentityHeadersStripped(t *testing.T) {
	up := newEcho(t)
	g := start(t, oneRoute(up.URL, ""))
	addr := g.addr("public")

	t.Run("raw request", func(t *testing.T) {
		lines := append([]string{"GET /who HTTP/1.1", "Host: app.test"}, forgedHeaders...)
		lines = append(lines, "Connection: close")
		resp := rawRequest(t, addr, crlf(lines...))
		checkNoForgedHeaders(t, decodeEcho(t, resp))
	})

	t.Run("Go client", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, g.url("public")+"/who", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range forgedHeaders {
			k, v, _ := strings.Cut(line, ": ")
			req.Header[k] = append(req.Header[k], v) // as written, not canonicalized
		}
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		checkNoForgedHeaders(t, decodeEcho(t, resp))
	})

	// An obs-fold continuation line (RFC 9112 §5.2) must never become a
	// header of its own: either the request is refused or the line is
	// folded into the previous value.
	t.Run("obs-fold continuation", func(t *testing.T) {
		resp := rawRequest(t, addr, crlf(
			"GET /who HTTP/1.1",
			"Host: app.test",
			"X-Innocent: a",
			" X-Gatehouse-User: mallory",
			"\tRemote-User: mallory",
			"Connection: close",
		))
		if resp.StatusCode == http.StatusBadRequest {
			return // refused: also fine
		}
		e := decodeEcho(t, resp)
		got := foldedNames(e.Header)
		if got["x-gatehouse-user"] || got["remote-user"] {
			t.Errorf("folded line became a separate header: %q", e.Header)
		}
	})
}

func TestConnectionHeaderCannotDropGatehouseHeaders(t *testing.T) {
	t.Run("X-Request-Id and X-Forwarded-*", func(t *testing.T) {
		up := newEcho(t)
		g := start(t, oneRoute(up.URL, ""))
		resp := rawRequest(t, g.addr("public"), crlf(
			"GET /x HTTP/1.1",
			"Host: app.test",
			"Connection: X-Request-Id, X-Forwarded-For, X-Forwarded-Proto",
			"Connection: close",
			"X-Request-Id: client-chosen",
			"X-Forwarded-For: 6.6.6.6",
			"X-Forwarded-Proto: https",
		))
		id := resp.Header.Get("X-Request-Id")
		e := decodeEcho(t, resp)
		if !isGeneratedID(id) {
			t.Errorf("response X-Request-Id = %q, want a generated ID", id)
		}
		want := http.Header{
			"X-Request-Id":      {id},
			"X-Forwarded-For":   {"127.0.0.1"},
			"X-Forwarded-Proto": {"http"},
		}
		got := http.Header{}
		for k := range want {
			got[k] = e.Header[k]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("headers gatehouse sets upstream (-want +got):\n%s", diff)
		}
		if r := g.record(id); r.ClientIP != "127.0.0.1" {
			t.Errorf("audit client_ip = %q, want 127.0.0.1", r.ClientIP)
		}
	})

	t.Run("request ID in the X-Gatehouse- namespace", func(t *testing.T) {
		up := newEcho(t)
		g := start(t, oneRoute(up.URL, "headers:\n  request_id: X-Gatehouse-Request-Id\n"))
		resp := rawRequest(t, g.addr("public"), crlf(
			"GET /x HTTP/1.1",
			"Host: app.test",
			"Connection: X-Gatehouse-Request-Id, close",
			"X-Gatehouse-Request-Id: forged",
		))
		id := resp.Header.Get("X-Gatehouse-Request-Id")
		e := decodeEcho(t, resp)
		if !isGeneratedID(id) {
			t.Errorf("response X-Gatehouse-Request-Id = %q, want a generated ID", id)
		}
		if got := e.Header["X-Gatehouse-Request-Id"]; !cmp.Equal(got, []string{id}) {
			t.Errorf("upstream X-Gatehouse-Request-Id = %q, want [%q]", got, id)
		}
		g.record(id) // exactly one record under gatehouse's ID
	})
}

// proxyConfig is a configuration whose listener takes PROXY headers in
// mode from the trusted network.
func proxyConfig(target, mode, trusted string) string {
	return fmt.Sprintf(`
listeners:
  - name: public
    address: 127.0.0.1:0
    proxy_protocol: %s
trusted_proxies: [%s]
admin:
  address: 127.0.0.1:0
upstreams:
  app:
    targets: [%s]
routes:
  - name: app
    upstream: app
    policy: {public: ["/"]}
`, mode, trusted, target)
}

// dialWithHeader connects to addr and sends hdr (nil for none).
func dialWithHeader(t *testing.T, addr string, hdr *proxyproto.Header) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if hdr != nil {
		c.SetWriteDeadline(time.Now().Add(ioTimeout))
		if _, err := hdr.WriteTo(c); err != nil {
			t.Fatalf("writing PROXY header: %v", err)
		}
	}
	return c
}

var (
	proxiedClient = &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 5555}
	proxiedDest   = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443}
)

func proxyV2() *proxyproto.Header {
	return proxyproto.HeaderProxyFromAddrs(2, proxiedClient, proxiedDest)
}

// getWho is a request on a connection the test keeps open until it has read
// the response.
const getWho = "GET /who HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"

// checkRefused asserts that the connection is closed without an HTTP
// response.
func checkRefused(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(ioTimeout))
	io.WriteString(c, getWho) // may fail: the server may have closed already
	closed, got, _ := readEnds(c, ioTimeout)
	if !closed {
		t.Fatalf("connection still open after %v", ioTimeout)
	}
	if len(got) > 0 {
		t.Fatalf("got a response, want the connection closed:\n%s", got)
	}
}

func TestProxyProtocolFromTrustedPeerGivesClientIP(t *testing.T) {
	up := newEcho(t)
	g := start(t, proxyConfig(up.URL, "optional", "127.0.0.1"))
	addr := g.addr("public")

	t.Run("PROXY v2", func(t *testing.T) {
		resp := rawOn(t, dialWithHeader(t, addr, proxyV2()), getWho)
		id := resp.Header.Get("X-Request-Id")
		e := decodeEcho(t, resp)
		if got := e.Header["X-Forwarded-For"]; !cmp.Equal(got, []string{"203.0.113.7"}) {
			t.Errorf("upstream X-Forwarded-For = %q, want [203.0.113.7]", got)
		}
		if r := g.record(id); r.ClientIP != "203.0.113.7" {
			t.Errorf("audit client_ip = %q, want 203.0.113.7", r.ClientIP)
		}
	})
}

// HAProxy with both send-proxy-v2 and option forwardfor has already
// appended the client to the chain: it is not listed twice, and the rest
// of the chain is kept.
func TestProxyProtocolWithForwardForListsClientOnce(t *testing.T) {
	up := newEcho(t)
	g := start(t, proxyConfig(up.URL, "optional", "127.0.0.1"))
	req := "GET /who HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.7\r\nConnection: close\r\n\r\n"
	e := decodeEcho(t, rawOn(t, dialWithHeader(t, g.addr("public"), proxyV2()), req))
	if got := e.Header["X-Forwarded-For"]; !cmp.Equal(got, []string{"198.51.100.1, 203.0.113.7"}) {
		t.Errorf("upstream X-Forwarded-For = %q, want [198.51.100.1, 203.0.113.7]", got)
	}
}

func TestProxyProtocolLocalCommandUsesPeer(t *testing.T) {
	up := newEcho(t)
	g := start(t, proxyConfig(up.URL, "optional", "127.0.0.1"))
	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}
	resp := rawOn(t, dialWithHeader(t, g.addr("public"), local), getWho)
	id := resp.Header.Get("X-Request-Id")
	e := decodeEcho(t, resp)
	if got := e.Header["X-Forwarded-For"]; !cmp.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("upstream X-Forwarded-For = %q, want [127.0.0.1]", got)
	}
	if r := g.record(id); r.ClientIP != "127.0.0.1" {
		t.Errorf("audit client_ip = %q, want 127.0.0.1", r.ClientIP)
	}
}

func TestProxyProtocolFromUntrustedPeerRefused(t *testing.T) {
	t.Run("optional: header refused", func(t *testing.T) {
		up := newEcho(t)
		g := start(t, proxyConfig(up.URL, "optional", "10.9.9.0/24"))
		checkRefused(t, dialWithHeader(t, g.addr("public"), proxyV2()))

		// The same untrusted peer without a header is an ordinary client.
		resp := rawOn(t, dialWithHeader(t, g.addr("public"), nil), getWho)
		id := resp.Header.Get("X-Request-Id")
		e := decodeEcho(t, resp)
		if got := e.Header["X-Forwarded-For"]; !cmp.Equal(got, []string{"127.0.0.1"}) {
			t.Errorf("upstream X-Forwarded-For = %q, want [127.0.0.1]", got)
		}
		recs := g.records()
		if len(recs) != 1 || recs[0].RequestID != id || recs[0].ClientIP != "127.0.0.1" {
			t.Errorf("want one audit record for %s from 127.0.0.1, got %+v", id, recs)
		}
	})

	t.Run("required: plain request refused", func(t *testing.T) {
		up := newEcho(t)
		g := start(t, proxyConfig(up.URL, "required", "10.9.9.0/24"))
		checkRefused(t, dialWithHeader(t, g.addr("public"), nil))
		checkRefused(t, dialWithHeader(t, g.addr("public"), proxyV2()))
		if recs := g.records(); len(recs) != 0 {
			t.Errorf("refused connections produced audit records: %+v", recs)
		}
	})

	t.Run("required: trusted peer without header refused", func(t *testing.T) {
		up := newEcho(t)
		g := start(t, proxyConfig(up.URL, "required", "127.0.0.1"))
		checkRefused(t, dialWithHeader(t, g.addr("public"), nil))
		resp := rawOn(t, dialWithHeader(t, g.addr("public"), proxyV2()), getWho)
		decodeEcho(t, resp)
	})
}

func TestSpoofedForwardedForFromUntrustedPeerReplaced(t *testing.T) {
	up := newEcho(t)
	g := start(t, oneRoute(up.URL, ""))
	req, _ := http.NewRequest(http.MethodGet, g.url("public")+"/who", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6, 7.7.7.7")
	req.Header.Add("X-Forwarded-For", "8.8.8.8")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "evil.test")
	req.Header.Set("X-Real-IP", "6.6.6.6")
	req.Header.Set("Forwarded", "for=6.6.6.6;proto=https")
	req.Header.Set("X-Request-Id", "chosen-by-client")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Request-Id")
	e := decodeEcho(t, resp)
	want := http.Header{
		"X-Forwarded-For":   {"127.0.0.1"},
		"X-Forwarded-Proto": {"http"},
		"X-Forwarded-Host":  {g.addr("public")},
		"X-Real-Ip":         nil,
		"Forwarded":         nil,
		"X-Request-Id":      {id},
	}
	got := http.Header{}
	for k := range want {
		got[k] = e.Header[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("forwarding headers (-want +got):\n%s", diff)
	}
	if !isGeneratedID(id) {
		t.Errorf("request ID %q from an untrusted client was kept", id)
	}
	if r := g.record(id); r.ClientIP != "127.0.0.1" {
		t.Errorf("audit client_ip = %q, want 127.0.0.1", r.ClientIP)
	}
}

func TestForwardedForFromTrustedPeerAppended(t *testing.T) {
	up := newEcho(t)
	g := start(t, oneRoute(up.URL, "trusted_proxies: [127.0.0.1]\n"))
	req, _ := http.NewRequest(http.MethodGet, g.url("public")+"/who", nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.9")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Request-Id", "haproxy-0001")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	e := decodeEcho(t, resp)
	want := http.Header{
		"X-Forwarded-For":   {"198.51.100.9, 127.0.0.1"},
		"X-Forwarded-Proto": {"https"},
		"X-Request-Id":      {"haproxy-0001"},
	}
	got := http.Header{}
	for k := range want {
		got[k] = e.Header[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("forwarding headers (-want +got):\n%s", diff)
	}
	if r := g.record("haproxy-0001"); r.ClientIP != "198.51.100.9" {
		t.Errorf("audit client_ip = %q, want 198.51.100.9", r.ClientIP)
	}
}

func TestOneAuditRecordPerRequest(t *testing.T) {
	const (
		total   = 10000
		workers = 16
	)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	g := start(t, fmt.Sprintf(`
listeners:
  - name: public
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
upstreams:
  app:
    targets: [%s]
  dead:
    targets: [http://%s]
    dial_timeout: 2s
routes:
  - name: app
    host: app.test
    upstream: app
    policy: {public: ["/"]}
  - name: dead
    host: dead.test
    upstream: dead
    policy: {public: ["/"]}
`, up.URL, closedPort(t)))
	base := g.url("public")

	// Each outcome: the Host and path that produce it.
	type outcome struct{ host, path string }
	outcomes := map[int]outcome{
		http.StatusOK:         {"app.test", "/ok"},
		http.StatusNotFound:   {"nowhere.test", "/ok"},
		http.StatusBadRequest: {"app.test", "/a/%2Fb"},
		http.StatusBadGateway: {"dead.test", "/ok"},
	}
	order := []int{http.StatusOK, http.StatusNotFound, http.StatusBadRequest, http.StatusBadGateway}

	tr := &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: ioTimeout}

	var (
		mu      sync.Mutex // guards counts and errs
		counts  = map[int]int{}
		errs    []error
		next    atomic.Int64
		wg      sync.WaitGroup
		started = time.Now()
	)
	for range workers {
		wg.Go(func() {
			local := map[int]int{}
			for {
				i := next.Add(1) - 1
				if i >= total {
					break
				}
				o := outcomes[order[i%int64(len(order))]]
				req, err := http.NewRequest(http.MethodGet, base+o.path, nil)
				if err != nil {
					panic(err)
				}
				req.Host = o.host
				resp, err := c.Do(req)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				local[resp.StatusCode]++
			}
			mu.Lock()
			for k, v := range local {
				counts[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("%d requests in %v", total, time.Since(started))
	if len(errs) > 0 {
		t.Errorf("%d client errors; first: %v", len(errs), errs[0])
	}
	want := map[int]int{200: total / 4, 404: total / 4, 400: total / 4, 502: total / 4}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("client-side outcomes (-want +got):\n%s", diff)
	}

	recs := g.records()
	byStatus := map[int]int{}
	ids := make(map[string]int, len(recs))
	for _, r := range recs {
		byStatus[r.Status]++
		ids[r.RequestID]++
	}
	if len(recs) != total {
		t.Errorf("%d audit records, want %d", len(recs), total)
	}
	if diff := cmp.Diff(counts, byStatus); diff != "" {
		t.Errorf("audit records by status vs client outcomes (-client +audit):\n%s", diff)
	}
	dups := 0
	for id, n := range ids {
		if n > 1 || id == "" {
			dups++
			if dups <= 5 {
				t.Errorf("request_id %q appears in %d records", id, n)
			}
		}
	}
}

func TestSecretNeverLogged(t *testing.T) {
	const secretValue = "s3cr3t-7f9d2c1e-never-log-me"
	t.Setenv("GH_TEST_ADMIN_TOKEN", secretValue)
	up := newEcho(t)
	g := start(t, fmt.Sprintf(`
listeners:
  - name: public
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
  token: env:GH_TEST_ADMIN_TOKEN
upstreams:
  app:
    targets: [%s]
  dead:
    targets: [http://%s]
routes:
  - name: app
    upstream: app
    policy: {public: ["/"]}
  - name: dead
    path: /dead
    upstream: dead
    policy: {public: ["/"]}
`, up.URL, closedPort(t)))

	c := client()
	send := func(path string, header http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, g.url("public")+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for _, path := range []string{"/app", "/dead", "/.gatehouse/nope", "/a/%2Fb"} {
		send(path, http.Header{"Authorization": {"Bearer " + secretValue}})
		send(path, http.Header{"Cookie": {"session=" + secretValue + "; other=1"}})
		send(path+"?token="+secretValue+"&x=1", nil)
		send(path, http.Header{"X-Gatehouse-User": {secretValue}})
		send(path, http.Header{"X-Random-Header": {secretValue}})
		send(path, http.Header{"X-Request-Id": {secretValue}}) // untrusted: replaced
	}

	t.Run("metrics need the token", func(t *testing.T) {
		get := func(auth string) (int, string) {
			req, _ := http.NewRequest(http.MethodGet, g.adminURL()+"/metrics", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, _ := get(""); code != http.StatusUnauthorized {
			t.Errorf("/metrics without token: %d, want 401", code)
		}
		if code, _ := get("Bearer wrong-" + secretValue); code != http.StatusUnauthorized {
			t.Errorf("/metrics with a wrong token: %d, want 401", code)
		}
		code, body := get("Bearer " + secretValue)
		if code != http.StatusOK {
			t.Fatalf("/metrics with token: %d, want 200", code)
		}
		if !strings.Contains(body, "gatehouse_requests_total") {
			t.Errorf("/metrics body lacks gatehouse_requests_total:\n%.2000s", body)
		}
		if strings.Contains(body, secretValue) {
			t.Errorf("/metrics body contains the secret")
		}
	})

	recs := g.records() // stops gatehouse, flushing the audit stream
	if len(recs) != 24 {
		t.Errorf("%d audit records, want 24", len(recs))
	}
	if s := g.audit.String(); strings.Contains(s, secretValue) {
		t.Errorf("audit stream contains the secret:\n%s", s)
	}
	if s := g.log.String(); strings.Contains(s, secretValue) {
		t.Errorf("operator log contains the secret:\n%s", s)
	}
}

// waitFor polls cond every 10ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool { return waitEvery(d, 10*time.Millisecond, cond) }

// waitEvery is waitFor checking cond every interval, for conditions that
// cost a request to an outside program.
func waitEvery(d, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// ctxWithTimeout is context.WithTimeout cancelled at cleanup.
func ctxWithTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// HAProxy terminating TLS says so in the PROXY v2 ssl TLV (proxy-v2-options
// ssl,ssl-cipher,authority): the request counts as https for routing,
// forwarding and audit, whatever X-Forwarded-Proto the request carries.
func TestProxyProtocolTLSFactsFromSSLTLV(t *testing.T) {
	up := newEcho(t)
	g := start(t, proxyConfig(up.URL, "required", "127.0.0.1"))
	hdr := proxyV2()
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 0, TLV: []proxyproto.TLV{
		{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")},
		{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte("TLS_AES_256_GCM_SHA384")},
	}}
	sslTLV, err := ssl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := hdr.SetTLVs([]proxyproto.TLV{
		{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte("h2")},
		{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("app.test")},
		sslTLV,
	}); err != nil {
		t.Fatal(err)
	}
	req := "GET /who HTTP/1.1\r\nHost: app.test:443\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n"
	resp := rawOn(t, dialWithHeader(t, g.addr("public"), hdr), req)
	id := resp.Header.Get("X-Request-Id")
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS on a request HAProxy received over TLS")
	}
	e := decodeEcho(t, resp)
	if got := e.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("upstream X-Forwarded-Proto = %q, want https", got)
	}
	if got := e.Header.Get("X-Forwarded-Host"); got != "app.test" {
		t.Errorf("upstream X-Forwarded-Host = %q, want app.test (the https default port dropped)", got)
	}

	// Without the ssl TLV the same request is plain http.
	resp = rawOn(t, dialWithHeader(t, g.addr("public"), proxyV2()), "GET /who HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
	if got := decodeEcho(t, resp).Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("without the TLV: X-Forwarded-Proto = %q, want http", got)
	}
	if r := g.record(id); !r.TLS {
		t.Error("audit record says tls false")
	}
}
