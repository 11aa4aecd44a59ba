package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// modulePath is the root module; the repository root is the directory of its
// go.mod.
const modulePath = "github.com/gatehouse-proxy/gatehouse"

const (
	// dexReadyTimeout bounds the wait for Dex's discovery document.
	dexReadyTimeout = 30 * time.Second
	// dexStopTimeout is how long Dex gets to exit after SIGTERM before SIGKILL.
	dexStopTimeout = 5 * time.Second
	// dexPortAttempts is how often Dex is started on a fresh port when the
	// one FreePort picked was taken in the meantime.
	dexPortAttempts = 3
)

// DexUser is a static password user. Dex keys it on Email, which is also the
// name typed into its login form's "login" field.
type DexUser struct {
	Username string
	Email    string
	UserID   string
	Password string // plaintext; Dex gets a bcrypt hash
	Groups   []string
}

// DexClient is a static OAuth 2.0 client.
type DexClient struct {
	ID                     string
	Secret                 string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI receives logout tokens when a Dex session ends
	// (see the package documentation). Empty means none.
	BackchannelLogoutURI string
}

// DexOptions configures Dex.
type DexOptions struct {
	Users   []DexUser
	Clients []DexClient
	// IDTokenTTL is expiry.idTokens. It also decides how long a rotated
	// signing key stays in the JWKS. Default 1h.
	IDTokenTTL time.Duration
	// KeysRotationPeriod is signer.config.keysRotationPeriod. Default 6h.
	// Dex checks for rotation only every 30 s, so a short period rotates
	// 0-30 s after it elapses, never faster.
	KeysRotationPeriod time.Duration
	// Persistent stores Dex's state (signing keys, sessions, refresh tokens)
	// in a SQLite file instead of memory, so that it survives Restart. It
	// needs a Dex built with cgo.
	Persistent bool
	// DisableSessions starts Dex without DEX_SESSIONS_ENABLED and without
	// the sessions key: no end_session_endpoint, no "sid", no back-channel
	// logout, but a refresh re-reads the user through the connector (with
	// sessions, Dex refreshes from the claims it cached at login; see the
	// package documentation).
	DisableSessions bool
}

// DexServer is a running Dex process.
type DexServer struct {
	// Issuer is http://127.0.0.1:PORT/dex.
	Issuer string
	// Port is the loopback port Dex listens on; it stays the same across
	// Restart.
	Port int

	bin string
	dir string // config and storage

	mu   sync.Mutex // guards proc
	proc *process
}

// Dex starts Dex on 127.0.0.1 with opts and stops it when the test ends. The
// binary is $GATEHOUSE_DEX if set, else <repo root>/bin/dex, which Dex builds
// from tools/dex when it is missing (minutes, once). Dex's output is logged
// only if the test failed.
func Dex(t testing.TB, opts DexOptions) *DexServer {
	t.Helper()
	d := &DexServer{bin: dexBinary(t), dir: t.TempDir()}
	t.Cleanup(func() {
		d.Stop()
		d.mu.Lock()
		p := d.proc
		d.mu.Unlock()
		if t.Failed() && p != nil {
			t.Logf("dex output:\n%s", p.out.String())
		}
	})
	var lastErr error
	for range dexPortAttempts {
		d.Port = FreePort(t)
		d.Issuer = fmt.Sprintf("http://127.0.0.1:%d/dex", d.Port)
		lastErr = d.start(opts)
		if lastErr == nil {
			return d
		}
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	t.Fatalf("starting dex: %v", lastErr)
	return nil
}

// Restart stops Dex and starts it again with opts on the same port and
// issuer. With Persistent set (in both starts), signing keys, sessions and
// refresh tokens survive; with memory storage they are lost, and every
// refresh token issued before fails afterwards. Static users and clients are
// configuration, so a restart is how their groups change (see the package
// documentation).
func (d *DexServer) Restart(t testing.TB, opts DexOptions) {
	t.Helper()
	d.Stop()
	if err := d.start(opts); err != nil {
		t.Fatalf("restarting dex: %v", err)
	}
}

// Stop ends the Dex process: SIGTERM, then SIGKILL after 5 s. It waits for
// the process and is safe to call more than once.
func (d *DexServer) Stop() {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	if p != nil {
		p.stop(dexStopTimeout)
	}
}

var errPortTaken = errors.New("port taken")

func (d *DexServer) start(opts DexOptions) error {
	cfg, err := dexConfig(d, opts)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(d.dir, "dex.json") // JSON is YAML: Dex reads it as is
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("writing dex config: %w", err)
	}

	// Keep the previous process's output: a failed test shows every run.
	out := &syncBuffer{}
	d.mu.Lock()
	if d.proc != nil {
		out.Write(d.proc.out.Bytes())
		out.Write([]byte("--- dex restarted ---\n"))
	}
	d.mu.Unlock()

	cmd := exec.Command(d.bin, "serve", cfgPath)
	cmd.Env = append(os.Environ(), "DEX_SESSIONS_ENABLED="+strconv.FormatBool(!opts.DisableSessions))
	p, err := startProcess(cmd, out)
	if err != nil {
		return fmt.Errorf("starting %s: %w", d.bin, err)
	}
	d.mu.Lock()
	d.proc = p
	d.mu.Unlock()

	if err := waitReady(d.Issuer, p); err != nil {
		p.stop(dexStopTimeout)
		if strings.Contains(out.String(), "address already in use") {
			return fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return fmt.Errorf("%w; output:\n%s", err, out.String())
	}
	return nil
}

// waitReady polls the discovery document until it answers 200, the process
// exits, or dexReadyTimeout passes.
func waitReady(issuer string, p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), dexReadyTimeout)
	defer cancel()
	u := issuer + "/.well-known/openid-configuration"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("dex exited before it was ready: %w", p.err)
		case <-ctx.Done():
			return fmt.Errorf("dex not ready after %v at %s", dexReadyTimeout, u)
		case <-tick.C:
		}
	}
}

// dexConfig renders Dex's configuration. Field names are those of Dex's
// cmd/dex/config.go and storage.Client/Password.
func dexConfig(d *DexServer, opts DexOptions) ([]byte, error) {
	idTTL := opts.IDTokenTTL
	if idTTL <= 0 {
		idTTL = time.Hour
	}
	rotation := opts.KeysRotationPeriod
	if rotation <= 0 {
		rotation = 6 * time.Hour
	}
	storage := map[string]any{"type": "memory"}
	if opts.Persistent {
		storage = map[string]any{"type": "sqlite3", "config": map[string]any{
			"file": filepath.Join(d.dir, "dex.db"),
		}}
	}

	users := make([]map[string]any, 0, len(opts.Users))
	for _, u := range opts.Users {
		// Dex's password login rejects a cost below bcrypt.DefaultCost
		// (server/passwords.CheckCost), so no cheaper hash for tests.
		hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.DefaultCost)
		if err != nil {
			return nil, fmt.Errorf("hashing password of %s: %w", u.Email, err)
		}
		groups := u.Groups
		if groups == nil {
			groups = []string{}
		}
		users = append(users, map[string]any{
			"email": u.Email, "username": u.Username, "userID": u.UserID,
			"hash": string(hash), "groups": groups,
		})
	}
	clients := make([]map[string]any, 0, len(opts.Clients))
	for _, c := range opts.Clients {
		m := map[string]any{
			"id": c.ID, "name": c.ID, "secret": c.Secret,
			"redirectURIs": c.RedirectURIs,
		}
		if len(c.PostLogoutRedirectURIs) > 0 {
			m["postLogoutRedirectURIs"] = c.PostLogoutRedirectURIs
		}
		if c.BackchannelLogoutURI != "" {
			m["backchannelLogoutURI"] = c.BackchannelLogoutURI
		}
		clients = append(clients, m)
	}

	cfg := map[string]any{
		"issuer":  d.Issuer,
		"storage": storage,
		"web":     map[string]any{"http": net.JoinHostPort("127.0.0.1", strconv.Itoa(d.Port))},
		"logger":  map[string]any{"level": "debug"},
		"oauth2": map[string]any{
			"skipApprovalScreen": true,
			"responseTypes":      []string{"code"},
			"grantTypes":         []string{"authorization_code", "refresh_token"},
		},
		"signer": map[string]any{"type": "local", "config": map[string]any{
			"keysRotationPeriod": rotation.String(),
		}},
		"expiry":           map[string]any{"idTokens": idTTL.String()},
		"enablePasswordDB": true,
		"staticPasswords":  users,
		"staticClients":    clients,
	}
	if !opts.DisableSessions {
		cfg["sessions"] = map[string]any{"absoluteLifetime": "24h", "validIfNotUsedFor": "1h"}
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// dexBuild serializes building bin/dex within one test binary.
var dexBuild sync.Mutex

// dexBinary returns the Dex binary, building it when it is missing.
func dexBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("GATEHOUSE_DEX"); p != "" {
		return p
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("finding the repository root: %v", err)
	}
	bin := filepath.Join(root, "bin", "dex")
	dexBuild.Lock()
	defer dexBuild.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building %s from tools/dex (make dex); this takes minutes the first time", bin)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	// Build under a temporary name and rename, so that a concurrent test
	// binary never runs a half-written file.
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, ".")
	cmd.Dir = filepath.Join(root, "tools", "dex")
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		t.Fatalf("building dex in %s: %v\n%s", cmd.Dir, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// repoRoot walks up from the working directory to the go.mod of the
// gatehouse module.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && moduleLine(b) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func moduleLine(gomod []byte) string {
	for line := range strings.SplitSeq(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the caller binds it; Dex retries for that.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for the process's two output streams and
// the test reading it.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *syncBuffer) String() string { return string(b.Bytes()) }
