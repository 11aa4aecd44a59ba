// Package listener prepares gatehouse's listening sockets: TLS with
// certificates reloaded from disk without a restart, PROXY protocol
// accepted only from trusted proxies, and the per-connection facts (the
// real peer, the client address a PROXY header gave) that the proxy needs
// to decide which forwarding headers to trust.
package listener

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CertReloader serves a certificate and key pair from PEM files and picks
// up new files when they change. A pair that fails to load is logged and
// the previous one kept, so a half-written renewal never takes TLS down.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	mu  sync.Mutex // guards sum: serializes Reload
	sum [sha256.Size]byte
}

// NewCertReloader loads the pair once; an error here is fatal for the
// listener.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	c := &CertReloader{certFile: certFile, keyFile: keyFile, log: log}
	if _, err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files and swaps in the pair if it changed. It reports
// whether a new certificate is now served.
func (c *CertReloader) Reload() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	certPEM, err := os.ReadFile(c.certFile)
	if err != nil {
		return false, fmt.Errorf("reading certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(c.keyFile)
	if err != nil {
		return false, fmt.Errorf("reading key %s: %w", c.keyFile, errors.Unwrap(err))
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if bytes.Equal(sum[:], c.sum[:]) && c.cert.Load() != nil {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	// The error text of X509KeyPair never includes key material.
	if err != nil {
		return false, fmt.Errorf("loading %s and %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert.Store(&pair)
	c.sum = sum
	return true, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// Watch reloads every interval until ctx ends.
func (c *CertReloader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.ReloadAndLog()
		}
	}
}

// ReloadAndLog reloads the pair and logs the outcome: a new certificate,
// or a failure that keeps the previous one.
func (c *CertReloader) ReloadAndLog() {
	changed, err := c.Reload()
	switch {
	case err != nil:
		c.log.Error("TLS certificate reload failed; keeping the previous certificate", "cert_file", c.certFile, "err", err)
	case changed:
		c.log.Info("TLS certificate reloaded", "cert_file", c.certFile)
	}
}

// TLSConfig returns a server TLS configuration serving c: TLS 1.2 or newer
// (minVersion "1.3" for 1.3 only), HTTP/2 and HTTP/1.1 offered by ALPN.
func TLSConfig(c *CertReloader, minVersion string) *tls.Config {
	v := uint16(tls.VersionTLS12)
	if minVersion == "1.3" {
		v = tls.VersionTLS13
	}
	return &tls.Config{
		MinVersion:     v,
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
