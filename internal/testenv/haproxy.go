package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const (
	// haproxyReadyTimeout bounds the wait for HAProxyOptions.Ready.
	haproxyReadyTimeout = 10 * time.Second
	// haproxyStopTimeout is how long HAProxy gets to exit after SIGTERM
	// before SIGKILL.
	haproxyStopTimeout = 5 * time.Second
	// haproxyCheckTimeout bounds `haproxy -c`, which parses the
	// configuration and loads certificates but binds nothing.
	haproxyCheckTimeout = 30 * time.Second
	// haproxyConfigName is the configuration's file name in the run
	// directory.
	haproxyConfigName = "haproxy.cfg"
	// haproxySystemBinary is where Debian's haproxy package installs it.
	haproxySystemBinary = "/usr/sbin/haproxy"
)

// HAProxyOptions configures a test HAProxy.
type HAProxyOptions struct {
	// Config is the haproxy.cfg text. Use `log stdout format raw local0` in
	// its global section so that HAProxy.Log shows the traffic log, and
	// loopback addresses from FreePort; HAProxy runs with -db, so the config
	// must not say `daemon` or `master-worker`.
	Config string
	// Files maps extra file names (relative to the run directory, such as
	// "spoe-gatehouse.conf" or "site.pem"; subdirectories are created) to
	// their contents. They are written into the run directory, which is
	// HAProxy's working directory, so the config may name them relatively.
	Files map[string][]byte
	// Ready are addresses (host:port) that must accept TCP connections
	// before HAProxy counts as started, typically its bind addresses. With
	// none, StartHAProxy returns as soon as the process runs. A probe is a
	// bare connect and close, which HAProxy logs as an aborted connection
	// unless the frontend has `option dontlognull`.
	Ready []string
}

// HAProxy is a running HAProxy process, started by StartHAProxy and stopped
// by Stop or when the test ends.
type HAProxy struct {
	*process
}

// StartHAProxy writes opts into a fresh run directory, checks the
// configuration with `haproxy -c` (CheckHAProxyConfig) and starts
// `haproxy -db -f haproxy.cfg` in the foreground. It waits up to 10 s for the
// Ready addresses and stops HAProxy when the test ends, logging its output if
// the test failed. It fails the test, never skips it, when the haproxy binary
// is missing (haproxyBinary), the config is invalid or HAProxy does not
// start.
func StartHAProxy(t testing.TB, opts HAProxyOptions) *HAProxy {
	t.Helper()
	bin, err := haproxyBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, haproxyConfigName)
	if err := writeHAProxyFiles(dir, cfgPath, opts); err != nil {
		t.Fatal(err)
	}
	if err := CheckHAProxyConfig(dir, cfgPath); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-db", "-f", cfgPath)
	cmd.Dir = dir // relative file names in the config resolve here
	p, err := startProcess(cmd, &syncBuffer{})
	if err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	h := &HAProxy{p}
	t.Cleanup(func() {
		h.Stop()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", h.Log())
		}
	})

	if err := h.waitReady(opts.Ready); err != nil {
		h.Stop()
		t.Fatalf("%v; output:\n%s", err, h.Log())
	}
	return h
}

// Stop ends the HAProxy process by its PID: SIGTERM (HAProxy's hard stop),
// then SIGKILL after 5 s. It waits for the process and is safe to call more
// than once and from several goroutines.
func (h *HAProxy) Stop() { h.stop(haproxyStopTimeout) }

// Log returns HAProxy's combined stdout and stderr so far: its startup
// warnings, and the traffic log when the config logs to stdout.
func (h *HAProxy) Log() string { return h.out.String() }

// haproxyBinary returns the haproxy binary: $GATEHOUSE_HAPROXY if set (to
// test another HAProxy version), else `haproxy` on PATH, else
// /usr/sbin/haproxy (not on a non-root PATH on Debian). It is an error when
// there is none: a test that needs HAProxy must not pass silently without
// it.
func haproxyBinary() (string, error) {
	if p := os.Getenv("GATEHOUSE_HAPROXY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("GATEHOUSE_HAPROXY: %w", err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(haproxySystemBinary); err != nil {
		return "", fmt.Errorf("no haproxy binary: not on PATH and %w (install Debian's haproxy package or set GATEHOUSE_HAPROXY)", err)
	}
	return haproxySystemBinary, nil
}

// CheckHAProxyConfig runs `haproxy -c -dW -f cfgPath` in dir, so relative
// file names in the config resolve against dir as they do for StartHAProxy.
// It returns an error carrying HAProxy's output when the config is invalid,
// and also when HAProxy only warns (-dW): in HAProxy a warning often means
// that a rule is ignored or runs in another order than it is written. A
// missing haproxy binary is an error too.
func CheckHAProxyConfig(dir, cfgPath string) error {
	bin, err := haproxyBinary()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), haproxyCheckTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", "-dW", "-f", cfgPath)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("haproxy -c -f %s: %w\n%s", cfgPath, err, out)
	}
	return nil
}

// writeHAProxyFiles writes opts.Files into dir and opts.Config to cfgPath.
func writeHAProxyFiles(dir, cfgPath string, opts HAProxyOptions) error {
	for name, b := range opts.Files {
		if !filepath.IsLocal(name) {
			return fmt.Errorf("haproxy file %q: not a relative path inside the run directory", name)
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("writing haproxy file %s: %w", name, err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return fmt.Errorf("writing haproxy file %s: %w", name, err)
		}
	}
	if err := os.WriteFile(cfgPath, []byte(opts.Config), 0o600); err != nil {
		return fmt.Errorf("writing haproxy config: %w", err)
	}
	return nil
}

// waitReady polls each address until it accepts a TCP connection, the
// process exits, or haproxyReadyTimeout passes.
func (h *HAProxy) waitReady(addrs []string) error {
	deadline := time.Now().Add(haproxyReadyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, addr := range addrs {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-h.done:
				return fmt.Errorf("haproxy exited before %s was ready: %w", addr, h.err)
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("haproxy not ready after %v: %s: %w", haproxyReadyTimeout, addr, err)
			}
			select {
			case <-h.done:
			case <-tick.C:
			}
		}
	}
	// A process that exits right after binding (say, a bad server
	// address at runtime) is not started either.
	select {
	case <-h.done:
		return fmt.Errorf("haproxy exited: %w", h.err)
	default:
		return nil
	}
}

// TestCert returns a PEM bundle in the format HAProxy's `crt` wants (the
// certificate followed by its unencrypted PKCS #8 private key) for a
// self-signed ECDSA P-256 certificate, valid from an hour ago for a day,
// for the given DNS names and 127.0.0.1, plus a pool that trusts it, for
// clients' tls.Config.RootCAs.
func TestCert(t testing.TB, names ...string) (pemBundle []byte, pool *x509.CertPool) {
	t.Helper()
	b, cert, err := testCert(names, time.Now())
	if err != nil {
		t.Fatalf("making a test certificate: %v", err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return b, pool
}

func testCert(names []string, now time.Time) ([]byte, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	cn := "gatehouse test"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		DNSNames:     names,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		// Self-signed, so it is its own CA: a client trusts it as a root.
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return b, cert, nil
}
