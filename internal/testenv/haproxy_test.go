//go:build e2e

package testenv

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// haproxyTestConfig is a TLS-terminating HTTP proxy on listen in front of
// upstream, logging to stdout.
func haproxyTestConfig(listen, upstream string) string {
	return fmt.Sprintf(`global
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect 5s
    timeout client  10s
    timeout server  10s

frontend fe_test
    bind %s ssl crt site.pem alpn h2,http/1.1
    http-request set-header X-Test-Proto https if { ssl_fc }
    default_backend be_upstream

backend be_upstream
    server up1 %s
`, listen, upstream)
}

func TestHAProxyTLSToUpstream(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s %s proto=%s", r.Method, r.URL.Path, r.Header.Get("X-Test-Proto"))
	}))
	defer upstream.Close()

	crt, pool := TestCert(t, "app.test")
	listen := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	h := StartHAProxy(t, HAProxyOptions{
		Config: haproxyTestConfig(listen, upstream.Listener.Addr().String()),
		Files:  map[string][]byte{"site.pem": crt},
		Ready:  []string{listen},
	})

	for _, serverName := range []string{"app.test", "127.0.0.1"} {
		t.Run(serverName, func(t *testing.T) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: serverName},
				ForceAttemptHTTP2: true,
			}}
			resp, err := c.Get("https://" + listen + "/hello")
			if err != nil {
				t.Fatalf("GET through haproxy: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			if resp.TLS == nil || resp.ProtoMajor != 2 {
				t.Errorf("TLS %v, protocol %s; want TLS with h2 from alpn", resp.TLS != nil, resp.Proto)
			}
			if want := "upstream saw GET /hello proto=https"; string(body) != want {
				t.Errorf("body %q, want %q", body, want)
			}
		})
	}

	// The traffic log goes to stdout, which Log collects; the line is
	// written when the stream ends, so poll for it.
	deadline := time.Now().Add(5 * time.Second)
	// HTTP/2 requests are logged with the absolute URI.
	for !strings.Contains(h.Log(), "/hello HTTP/2.0\"") {
		if time.Now().After(deadline) {
			t.Fatalf("no request in the haproxy log:\n%s", h.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}

	h.Stop()
	h.Stop() // idempotent
	if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Stop", listen)
	}
}

func TestCheckHAProxyConfig(t *testing.T) {
	crt, _ := TestCert(t)
	tests := []struct {
		name    string
		config  string
		wantErr string // substring of the error; empty means valid
	}{
		{
			name:   "valid",
			config: haproxyTestConfig("127.0.0.1:1", "127.0.0.1:2"),
		},
		{
			name:    "unknown keyword",
			config:  haproxyTestConfig("127.0.0.1:1", "127.0.0.1:2") + "    frobnicate yes\n",
			wantErr: "frobnicate",
		},
		{
			name:    "missing certificate",
			config:  strings.Replace(haproxyTestConfig("127.0.0.1:1", "127.0.0.1:2"), "site.pem", "absent.pem", 1),
			wantErr: "absent.pem",
		},
		{
			// -dW: a warning fails the check too.
			name: "warning",
			config: haproxyTestConfig("127.0.0.1:1", "127.0.0.1:2") +
				"frontend fe_late\n    bind 127.0.0.1:3\n    use_backend be_upstream\n    http-request deny\n",
			wantErr: "WARNING",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "site.pem"), crt, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(cfg, []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			err := CheckHAProxyConfig(dir, cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckHAProxyConfig: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("CheckHAProxyConfig accepted the config; want an error with %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("CheckHAProxyConfig error %q does not mention %q", err, tt.wantErr)
			case err != nil:
				t.Logf("rejected as expected: %v", err)
			}
		})
	}
}

func TestTestCert(t *testing.T) {
	crt, pool := TestCert(t, "app.test", "gh.test")
	cert, err := tls.X509KeyPair(crt, crt)
	if err != nil {
		t.Fatalf("the bundle is not a certificate and key: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the other.test handshake fails on purpose
	srv.StartTLS()
	defer srv.Close()
	for _, name := range []string{"app.test", "gh.test", "127.0.0.1"} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name}}}
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		resp.Body.Close()
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "other.test"}}}
	if resp, err := c.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Errorf("other.test: certificate accepted for a name it does not hold")
	}
}
