package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/gatehouse-proxy/gatehouse/internal/config"
)

// upstreamTLS builds the TLS configuration for an upstream's https targets:
// a custom CA pool, an SNI/verification name and a client certificate, the
// key by secret reference. It returns nil when nothing is configured (the
// transport's defaults: system roots, the target's host).
func (a *App) upstreamTLS(ctx context.Context, name string, tc *config.UpstreamTLS) (*tls.Config, error) {
	if tc == nil {
		return nil, nil
	}
	p := "upstreams." + name + ".tls"
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: tc.ServerName}
	if tc.CAFile != "" {
		pem, err := os.ReadFile(tc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", p, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.ca_file: %s holds no PEM certificate", p, tc.CAFile)
		}
		cfg.RootCAs = pool
	}
	if tc.ClientCertFile != "" {
		certPEM, err := os.ReadFile(tc.ClientCertFile)
		if err != nil {
			return nil, fmt.Errorf("%s.client_cert_file: %w", p, err)
		}
		key, err := a.secrets.Resolve(ctx, tc.ClientKey.Ref)
		if err != nil {
			return nil, fmt.Errorf("%s.client_key: %w", p, err)
		}
		cert, err := tls.X509KeyPair(certPEM, key.Reveal())
		if err != nil {
			// The error may describe the key; say only that the pair failed.
			return nil, fmt.Errorf("%s: %w", p, errors.New("client certificate and key do not form a valid pair"))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
