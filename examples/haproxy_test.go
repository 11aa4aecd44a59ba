//go:build e2e

package examples

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/testenv"
)

// haproxyDir holds the HAProxy examples. They name their files under
// /etc/haproxy/, which the tests rewrite into a temporary directory.
const (
	haproxyDir      = "haproxy"
	haproxyEtc      = "/etc/haproxy/"
	haproxySPOEConf = "spoe-gatehouse.conf"
)

// haproxyExample returns the example config name with its /etc/haproxy/
// paths pointing into a fresh directory that holds a generated site.pem
// and the example spoe-gatehouse.conf, that directory, and a pool trusting
// site.pem (for app.test and 127.0.0.1).
func haproxyExample(t *testing.T, name string) (cfg, dir string, pool *x509.CertPool) {
	t.Helper()
	dir = t.TempDir()
	b, err := os.ReadFile(filepath.Join(haproxyDir, name))
	if err != nil {
		t.Fatal(err)
	}
	spoe, err := os.ReadFile(filepath.Join(haproxyDir, haproxySPOEConf))
	if err != nil {
		t.Fatal(err)
	}
	crt, pool := testenv.TestCert(t, "app.test")
	for file, content := range map[string][]byte{"site.pem": crt, haproxySPOEConf: spoe} {
		if err := os.WriteFile(filepath.Join(dir, file), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return strings.ReplaceAll(string(b), haproxyEtc, dir+"/"), dir, pool
}

// TestExampleHAProxyConfigsValid runs `haproxy -c` on every example .cfg,
// with warnings counting as errors (see testenv.CheckHAProxyConfig). It
// fails, not skips, without haproxy: the examples are meant to be copied.
func TestExampleHAProxyConfigsValid(t *testing.T) {
	names, err := filepath.Glob(filepath.Join(haproxyDir, "*.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatalf("no %s/*.cfg", haproxyDir)
	}
	for _, p := range names {
		name := filepath.Base(p)
		t.Run(name, func(t *testing.T) {
			cfg, dir, _ := haproxyExample(t, name)
			cfgPath := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := testenv.CheckHAProxyConfig(dir, cfgPath); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestExampleHAProxySPOEFailsClosed runs spoe.cfg with no agent listening:
// every request must get 401, even one carrying forged identity headers,
// and none may reach the app. This is what happens when gatehouse is down.
func TestExampleHAProxySPOEFailsClosed(t *testing.T) {
	var reached atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/health" { // HAProxy's health check
			reached.Add(1)
		}
		fmt.Fprintln(w, "app")
	}))
	defer app.Close()

	cfg, _, pool := haproxyExample(t, "spoe.cfg")
	https := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	local := map[string]string{
		"bind :443 ":     "bind " + https + " ",
		"bind :80\n":     fmt.Sprintf("bind 127.0.0.1:%d\n", testenv.FreePort(t)),
		"127.0.0.1:3000": app.Listener.Addr().String(),
		// Nothing listens on these.
		"127.0.0.1:8081":  fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"127.0.0.1:12345": fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
	}
	for old, repl := range local {
		if !strings.Contains(cfg, old) {
			t.Fatalf("spoe.cfg no longer contains %q; update this test", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	// The config names site.pem and the SPOE conf by absolute path, in
	// haproxyExample's directory.
	h := testenv.StartHAProxy(t, testenv.HAProxyOptions{Config: cfg, Ready: []string{https}})

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "app.test"},
	}}
	for _, hdr := range []http.Header{
		{},
		{"X-Gatehouse-User": {"admin"}, "X-Gatehouse-Groups": {"admins"}},
	} {
		req, err := http.NewRequest(http.MethodGet, "https://"+https+"/dashboard/1", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = hdr
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET with %v: %v", hdr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET with %v: status %d, body %q; want 401 with the agent down", hdr, resp.StatusCode, body)
		}
		if v, ok := resp.Header["Www-Authenticate"]; ok {
			t.Errorf("GET with %v: WWW-Authenticate %q without a verdict; want none", hdr, v)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the app got %d requests with the agent down; want 0\nhaproxy log:\n%s", n, h.Log())
	}
}
