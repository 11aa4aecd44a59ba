package app_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/gatehouse-proxy/gatehouse/internal/app"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
)

// TestMetabaseDeprovisionUsesTheUpstreamsTLSAndTargets: `gatehouse
// metabase deprovision` reaches Metabase the way gatehouse serve does: over
// https with the upstream's private CA and server name, and past a target
// that refuses connections to the next one.
func TestMetabaseDeprovisionUsesTheUpstreamsTLSAndTargets(t *testing.T) {
	g, mb := startMetabaseBroker(t)
	alice := browser(t)
	g.signIn(t, alice, "/", "alice", "wonderland")
	metabaseUser(t, alice, g.origin+"/dashboard/1", nil)

	// Metabase behind TLS whose certificate only the upstream's ca_file
	// trusts, for the name app.test.
	certPEM, keyPEM := selfSigned(t, 7)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	mbURL, err := url.Parse(mb.URL)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(mbURL))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	front.StartTLS()
	t.Cleanup(front.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, caFile, certPEM)

	cfg, err := config.Parse("gatehouse.yaml", []byte(fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
public_url: http://127.0.0.1:1
identity: {builtin: {demo_users: true}}
upstreams:
  metabase:
    targets: [https://%s, %s]
    tls: {ca_file: %s, server_name: app.test}
routes:
  - name: metabase
    upstream: metabase
    metabase: {mode: broker, api_key: env:GH_MB_API_KEY, broker_key: env:GH_MB_BROKER_KEY, groups: {analysts: Analysts}}
    policy: {allow: [{authenticated: true}]}
`, closedPort(t), front.URL, caFile)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := app.DeprovisionMetabaseUser(ctx, cfg, "metabase", "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	if u, _ := mb.User("alice@example.test"); u.Active || len(mb.Sessions("alice@example.test")) != 0 {
		t.Fatalf("after deprovision: active %v, %d sessions", u.Active, len(mb.Sessions("alice@example.test")))
	}
}
