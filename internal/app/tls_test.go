package app_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsFixture is a TLS listener's certificate files.
type tlsFixture struct {
	dir, certFile, keyFile string
	pool                   *x509.CertPool // trusts every certificate written
}

func newTLSFixture(t *testing.T, serial int64) *tlsFixture {
	t.Helper()
	dir := t.TempDir()
	f := &tlsFixture{dir: dir, certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	f.write(t, serial)
	return f
}

// write replaces the pair with a new certificate, key first, each file
// atomically, as a renewal agent would.
func (f *tlsFixture) write(t *testing.T, serial int64) {
	t.Helper()
	certPEM, keyPEM := selfSigned(t, serial)
	if !f.pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("bad test certificate")
	}
	writeFile(t, f.keyFile, keyPEM)
	writeFile(t, f.certFile, certPEM)
}

func tlsConfig(target string, f *tlsFixture) string {
	return fmt.Sprintf(`
listeners:
  - name: tls
    address: 127.0.0.1:0
    tls:
      cert_file: %s
      key_file: %s
      reload_interval: 100ms
admin:
  address: 127.0.0.1:0
upstreams:
  app:
    targets: [%s]
routes:
  - name: app
    upstream: app
    policy: {public: ["/"]}
`, f.certFile, f.keyFile, target)
}

// servedSerial returns the serial number of the certificate a new TLS
// connection to addr is served.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	d := &net.Dialer{Timeout: ioTimeout}
	// The certificate is checked by serial below, not by a CA.
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSCertificateReloadedWithoutRestart(t *testing.T) {
	up := newEcho(t)
	f := newTLSFixture(t, 1001)
	g := start(t, tlsConfig(up.URL, f))
	addr := g.addr("tls")
	base := "https://" + addr

	h2 := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: f.pool},
		ForceAttemptHTTP2: true,
	}}
	t.Cleanup(h2.CloseIdleConnections)

	t.Run("HTTP/2 over TLS", func(t *testing.T) {
		resp, err := h2.Get(base + "/who")
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Errorf("negotiated %s, want HTTP/2", resp.Proto)
		}
		e := decodeEcho(t, resp)
		if got := e.Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("upstream X-Forwarded-Proto = %q, want https", got)
		}
	})

	t.Run("HSTS on proxied responses", func(t *testing.T) {
		resp, err := h2.Get(base + "/who")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("Strict-Transport-Security = %q, want max-age=31536000", got)
		}
	})

	// RFC 6797 §7.1: the header belongs on every response over a secure
	// transport, including the ones gatehouse writes itself (errors, and
	// later the login redirects).
	t.Run("HSTS on gatehouse's own responses", func(t *testing.T) {
		for _, path := range []string{"/.gatehouse/healthz", "/.gatehouse/nope", "/a/%2Fb"} {
			resp, err := h2.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
				t.Errorf("%s (%d): Strict-Transport-Security = %q, want max-age=31536000", path, resp.StatusCode, got)
			}
		}
	})

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		d := &net.Dialer{Timeout: ioTimeout}
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
			RootCAs: f.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
		})
		if err == nil {
			c.Close()
			t.Fatalf("TLS 1.1 handshake succeeded (version %x)", c.ConnectionState().Version)
		}
	})

	t.Run("certificate reloaded", func(t *testing.T) {
		if got := servedSerial(t, addr); got != 1001 {
			t.Fatalf("served serial %d, want 1001", got)
		}
		f.write(t, 1002)
		if !waitFor(5*time.Second, func() bool { return servedSerial(t, addr) == 1002 }) {
			t.Fatalf("still serving serial %d 5s after the files changed", servedSerial(t, addr))
		}
		// A fresh client that trusts only the new certificate verifies it.
		fresh := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.pool}}}
		defer fresh.CloseIdleConnections()
		resp, err := fresh.Get(base + "/who")
		if err != nil {
			t.Fatal(err)
		}
		decodeEcho(t, resp)
	})

	t.Run("broken pair keeps the old certificate", func(t *testing.T) {
		if err := os.WriteFile(f.certFile, []byte("-----BEGIN CERTIFICATE-----\nnot a cert\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if !waitFor(5*time.Second, func() bool {
			return strings.Contains(g.log.String(), "TLS certificate reload failed")
		}) {
			t.Fatal("no reload failure logged within 5s")
		}
		if got := servedSerial(t, addr); got != 1002 {
			t.Errorf("served serial %d after a broken renewal, want 1002", got)
		}
	})
}

// TestRunStopsCertificateWatcher checks that nothing of an App keeps running
// after Run returns: the certificate watcher must stop with it (a watcher
// that outlives Run keeps reading the files and logging forever, once per
// App built in the process). Absence can only be shown by waiting: the test
// watches for 10 reload intervals.
func TestRunStopsCertificateWatcher(t *testing.T) {
	up := newEcho(t)
	f := newTLSFixture(t, 2001)
	g := start(t, tlsConfig(up.URL, f))
	if err := g.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	before := g.log.String()
	f.write(t, 2002)
	os.Remove(f.keyFile)
	time.Sleep(time.Second)
	if after := g.log.String()[len(before):]; strings.Contains(after, "TLS certificate") {
		t.Errorf("the certificate watcher still runs after Run returned:\n%s", after)
	}
}

func redirectConfig(target string, httpsPort int) string {
	return fmt.Sprintf(`
listeners:
  - name: http
    address: 127.0.0.1:0
    redirect_https: true
    https_port: %d
admin:
  address: 127.0.0.1:0
upstreams:
  app:
    targets: [%s]
routes:
  - name: app
    host: app.test
    upstream: app
    policy: {public: ["/"]}
  - name: wild
    host: "*.apps.test"
    upstream: app
    policy: {public: ["/"]}
`, httpsPort, target)
}

func TestRedirectListener(t *testing.T) {
	upstreamHit := make(chan struct{}, 100)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHit <- struct{}{}
	}))

	tests := []struct {
		name      string
		httpsPort int
		host      string
		target    string // request-target
		status    int
		location  string
	}{
		{"routed host", 8443, "app.test", "/some/path?q=1&r=a%20b", 308, "https://app.test:8443/some/path?q=1&r=a%20b"},
		{"default port left out", 443, "app.test", "/x?q", 308, "https://app.test/x?q"},
		{"port in Host dropped", 443, "app.test:8080", "/x", 308, "https://app.test/x"},
		{"upper-case host and trailing dot", 443, "APP.Test.", "/x", 308, "https://app.test/x"},
		{"wildcard route", 443, "a.apps.test", "/", 308, "https://a.apps.test/"},
		{"double slash cannot change the host", 443, "app.test", "//evil.test/x", 308, "https://app.test/evil.test/x"},
		{"unknown host is not redirected", 443, "evil.test", "/x", 404, ""},
		{"suffix of a wildcard is not a subdomain", 443, "apps.test", "/x", 404, ""},
		{"lookalike host", 443, "app.test.evil.test", "/x", 404, ""},
		{"userinfo in Host", 443, "app.test@evil.test", "/x", 400, ""},
		{"encoded slash", 443, "app.test", "/a/%2Fb", 400, ""},
	}
	gs := map[int]*gatehouse{
		443:  start(t, redirectConfig(up.URL, 443)),
		8443: start(t, redirectConfig(up.URL, 8443)),
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := gs[tc.httpsPort]
			resp := rawRequest(t, g.addr("http"), crlf(
				"GET "+tc.target+" HTTP/1.1",
				"Host: "+tc.host,
				"Connection: close",
			))
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d\n%s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location = %q, want %q", got, tc.location)
			}
		})
	}
	select {
	case <-upstreamHit:
		t.Error("the redirect listener forwarded a request upstream")
	default:
	}
}
