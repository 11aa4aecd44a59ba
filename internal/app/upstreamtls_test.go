package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"
)

// clientCert makes a self-signed certificate for TLS client
// authentication.
func clientCert(t *testing.T) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(77),
		Subject:      pkix.Name{CommonName: "gatehouse client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), cert
}

// TestUpstreamTLSWithCustomCAServerNameAndClientCert runs an https target
// whose certificate a private CA signed (self-signed here) for the name
// app.test, and which requires a client certificate: gatehouse reaches it
// only with the CA, the name and the certificate configured.
func TestUpstreamTLSWithCustomCAServerNameAndClientCert(t *testing.T) {
	dir := t.TempDir()
	srvCert, srvKey := selfSigned(t, 1)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	cliCertPEM, cliKeyPEM, cliCert := clientCert(t)
	clients := x509.NewCertPool()
	clients.AddCert(cliCert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	writeFile(t, caFile, srvCert)
	writeFile(t, certFile, cliCertPEM)
	writeFile(t, keyFile, cliKeyPEM)

	for _, tc := range []struct {
		name, tls string
		status    int
	}{
		{"all set", fmt.Sprintf("{ca_file: %s, server_name: app.test, client_cert_file: %s, client_key: \"file:%s\"}", caFile, certFile, keyFile), http.StatusOK},
		{"system roots do not know the CA", fmt.Sprintf("{client_cert_file: %s, client_key: \"file:%s\"}", certFile, keyFile), http.StatusBadGateway},
		{"wrong server name", fmt.Sprintf("{ca_file: %s, server_name: other.test, client_cert_file: %s, client_key: \"file:%s\"}", caFile, certFile, keyFile), http.StatusBadGateway},
		{"no client certificate", fmt.Sprintf("{ca_file: %s, server_name: app.test}", caFile), http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := start(t, poolConfig([]string{srv.URL}, "    tls: "+tc.tls))
			status, body := get(t, g.url("public")+"/x")
			if status != tc.status {
				t.Fatalf("status %d (%q), want %d", status, body, tc.status)
			}
			if status == http.StatusOK && body != "secure" {
				t.Errorf("body %q", body)
			}
		})
	}
}
