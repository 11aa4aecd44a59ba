package app_test

// This file is the in-process harness the acceptance tests share: gatehouse
// on 127.0.0.1:0 with its audit stream and operator log captured, echo
// upstreams, raw HTTP/1.1 over a net.Conn, and self-signed certificates.
// Every wait is bounded; nothing sleeps to wait for a server.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/app"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
)

// Bounds for every wait in the suite.
const (
	readyTimeout = 5 * time.Second  // gatehouse answering readyz
	stopTimeout  = 15 * time.Second // Run returning after cancel
	ioTimeout    = 5 * time.Second  // one client exchange
)

// syncBuffer is a bytes.Buffer safe for concurrent use: the audit sink and
// the operator log write from many goroutines.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gatehouse is one running App.
type gatehouse struct {
	t      testing.TB
	app    *app.App
	audit  *syncBuffer // audit records (audit.output: stdout)
	log    *syncBuffer // operator log, at debug level
	cancel context.CancelFunc
	done   chan error // receives Run's result once

	stopOnce sync.Once
	runErr   error
}

// startOptions adjusts start.
type startOptions struct {
	// configPath is passed as app.Options.ConfigPath (for Reload); when set,
	// the configuration is loaded from that file instead of yamlText.
	configPath string
}

// start parses yamlText, builds and runs gatehouse, and waits until the
// admin listener reports ready. The configuration must put the admin
// listener on 127.0.0.1:0 and write audit records to stdout.
func start(t testing.TB, yamlText string) *gatehouse {
	t.Helper()
	return startWith(t, yamlText, startOptions{})
}

func startWith(t testing.TB, yamlText string, so startOptions) *gatehouse {
	t.Helper()
	var cfg *config.Config
	var err error
	if so.configPath != "" {
		cfg, err = config.Load(so.configPath)
	} else {
		cfg, err = config.Parse("test.yaml", []byte(yamlText))
	}
	if err != nil {
		t.Fatalf("configuration:\n%v\n--- yaml ---\n%s", err, yamlText)
	}
	g := &gatehouse{t: t, audit: &syncBuffer{}, log: &syncBuffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(g.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(cfg, app.Options{Log: log, AuditStdout: g.audit, ConfigPath: so.configPath})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	g.app = a
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("operator log:\n%s", g.log.String())
		}
	})
	g.waitReady()
	return g
}

// waitReady polls the admin listener's readyz until it answers 200.
func (g *gatehouse) waitReady() {
	g.t.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := c.Get(g.adminURL() + "/.gatehouse/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-g.done:
			g.t.Fatalf("Run returned before ready: %v\n%s", err, g.log.String())
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("gatehouse not ready after %v (last error %v)\n%s", readyTimeout, err, g.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// addr returns the host:port of the named listener ("admin" for admin).
func (g *gatehouse) addr(name string) string {
	g.t.Helper()
	a := g.app.Addr(name)
	if a == nil {
		g.t.Fatalf("no listener named %q", name)
	}
	return a.String()
}

func (g *gatehouse) url(name string) string { return "http://" + g.addr(name) }

func (g *gatehouse) adminURL() string { return g.url("admin") }

// stop cancels Run and waits (bounded) for it to return; it is idempotent
// and returns Run's error.
func (g *gatehouse) stop() error {
	g.stopOnce.Do(func() {
		g.cancel()
		select {
		case g.runErr = <-g.done:
		case <-time.After(stopTimeout):
			g.runErr = fmt.Errorf("Run did not return within %v of cancel", stopTimeout)
			g.t.Error(g.runErr)
		}
	})
	return g.runErr
}

// auditRecord is the part of an audit record the tests look at.
type auditRecord struct {
	RequestID string `json:"request_id"`
	ClientIP  string `json:"client_ip"`
	Method    string `json:"method"`
	Host      string `json:"host"`
	Path      string `json:"path"`
	Route     string `json:"route"`
	Decision  string `json:"decision"`
	Reason    string `json:"reason"`
	Rule      string `json:"rule"`
	Auth      string `json:"auth_method"`
	Subject   string `json:"subject"`
	Email     string `json:"email"`
	Status    int    `json:"status"`
	TLS       bool   `json:"tls"`
	Proto     string `json:"proto"`
	Via       string `json:"via"`
}

// records stops gatehouse (records are flushed when Run returns) and
// decodes every audit record.
func (g *gatehouse) records() []auditRecord {
	g.t.Helper()
	if err := g.stop(); err != nil {
		g.t.Errorf("Run: %v", err)
	}
	var out []auditRecord
	sc := bufio.NewScanner(strings.NewReader(g.audit.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			g.t.Fatalf("audit line is not JSON: %v\n%s", err, sc.Text())
		}
		out = append(out, r)
	}
	return out
}

// recordsByID returns gatehouse's audit records (stopping it) by request
// ID.
func recordsByID(g *gatehouse) map[string][]auditRecord {
	m := map[string][]auditRecord{}
	for _, r := range g.records() {
		m[r.RequestID] = append(m[r.RequestID], r)
	}
	return m
}

// oneRecord returns the single record in m with request ID id, failing the
// test (without stopping it) when id is empty or has not exactly one.
func oneRecord(t *testing.T, m map[string][]auditRecord, id string) (auditRecord, bool) {
	t.Helper()
	if id == "" {
		t.Error("the app saw no X-Request-Id")
		return auditRecord{}, false
	}
	if len(m[id]) != 1 {
		t.Errorf("%d audit records with request_id %q, want 1", len(m[id]), id)
		return auditRecord{}, false
	}
	return m[id][0], true
}

// record returns the single audit record with this request ID.
func (g *gatehouse) record(requestID string) auditRecord {
	g.t.Helper()
	var found []auditRecord
	for _, r := range g.records() {
		if r.RequestID == requestID {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		g.t.Fatalf("want exactly one audit record with request_id %q, got %d\naudit:\n%s", requestID, len(found), g.audit.String())
	}
	return found[0]
}

// echoed is what the echo upstream reports about the request it received.
type echoed struct {
	Method     string      `json:"method"`
	Host       string      `json:"host"`
	Path       string      `json:"path"`
	RawPath    string      `json:"raw_path"`
	RawQuery   string      `json:"raw_query"`
	RemoteAddr string      `json:"remote_addr"`
	Header     http.Header `json:"header"`
}

// echoHandler answers with the request line, RemoteAddr and headers as JSON.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(echoed{
		Method: r.Method, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath,
		RawQuery: r.URL.RawQuery, RemoteAddr: r.RemoteAddr, Header: r.Header,
	})
}

// newUpstream starts an httptest server with h, closed at cleanup.
func newUpstream(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// newEcho starts an echo upstream.
func newEcho(t testing.TB) *httptest.Server {
	return newUpstream(t, http.HandlerFunc(echoHandler))
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// decodeEcho reads an echo response, failing on a non-200.
func decodeEcho(t testing.TB, resp *http.Response) echoed {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200; body:\n%s", resp.StatusCode, body)
	}
	var e echoed
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("upstream reply is not the echo: %v\n%s", err, body)
	}
	return e
}

// client returns an HTTP client with a bounded timeout that does not follow
// redirects.
func client() *http.Client {
	return &http.Client{
		Timeout:       ioTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// rawRequest sends req (a complete HTTP/1.1 request as written, so header
// names keep the spelling and duplicates the client chose) on a new
// connection to addr and reads one response.
func rawRequest(t testing.TB, addr, req string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return rawOn(t, c, req)
}

// rawOn writes req on c and reads one response, its body fully buffered.
func rawOn(t testing.TB, c net.Conn, req string) *http.Response {
	t.Helper()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("writing request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// crlf turns a readable request (lines separated by \n) into wire format.
func crlf(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n\r\n"
}

// foldedNames returns every key of h folded (lower case, "_" as "-").
func foldedNames(h http.Header) map[string]bool {
	m := map[string]bool{}
	for k := range h {
		m[strings.ReplaceAll(strings.ToLower(k), "_", "-")] = true
	}
	return m
}

// writeFile writes data to path atomically (temp file and rename), as a
// certificate renewal or configuration deployment would.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// selfSigned returns a PEM certificate for 127.0.0.1 and localhost with the
// given serial, and its PEM key.
func selfSigned(t testing.TB, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("gatehouse test %d", serial)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost", "app.test"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// readEnds reads c until it ends (EOF or reset) or d passes, and reports
// whether it ended, with whatever was read.
func readEnds(c net.Conn, d time.Duration) (closed bool, got []byte, err error) {
	c.SetReadDeadline(time.Now().Add(d))
	got, err = io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, got, err
	}
	return true, got, err
}
