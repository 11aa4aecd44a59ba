// Command dex runs the Dex OpenID provider for gatehouse's end-to-end tests.
//
// It is Dex's own server, storage, connectors and signer (the packages
// github.com/dexidp/dex/server, .../storage and .../server/signer at the
// commit pinned in go.mod), so the OIDC implementation is exactly Dex's. Only
// the main is ours: Dex's cmd/dex also serves a gRPC API (server/apiserver),
// which needs github.com/dexidp/dex/api/v2 at the same commit, and the module
// proxy refuses that version, so cmd/dex cannot be built here. This main has
// no gRPC API, no telemetry listener, no HTTPS and no connectors other than
// the local password database.
//
// Usage:
//
//	dex serve CONFIG
//
// CONFIG is a subset of Dex's YAML (or JSON) configuration, the keys of
// cmd/dex/config.go with the same meaning; an unknown key is an error:
//
//	issuer
//	storage          type memory, or sqlite3 with config.file (needs cgo)
//	web.http         listen address
//	logger           level, format (text or json)
//	oauth2           skipApprovalScreen, alwaysShowLoginScreen, responseTypes, grantTypes
//	signer           type local with config.keysRotationPeriod (and algorithm)
//	expiry           idTokens, signingKeys, authRequests, refreshTokens
//	sessions         cookieName, absoluteLifetime, validIfNotUsedFor, ...
//	enablePasswordDB
//	staticPasswords  email, username, userID, hash (bcrypt), groups, ...
//	staticClients    Dex's storage.Client fields (backchannelLogoutURI, ...)
//
// As in cmd/dex, sessions (and with them end_session_endpoint, "sid" in ID
// tokens and back-channel logout) are on only when the environment has
// DEX_SESSIONS_ENABLED=true, and a sessions key without it is an error.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	gosundheit "github.com/AppsFlyer/go-sundheit"
	"github.com/AppsFlyer/go-sundheit/checks"
	"github.com/ghodss/yaml"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/dexidp/dex/pkg/featureflags"
	"github.com/dexidp/dex/server"
	"github.com/dexidp/dex/server/connectors"
	"github.com/dexidp/dex/server/session"
	"github.com/dexidp/dex/server/signer"
	"github.com/dexidp/dex/server/tokens"
	"github.com/dexidp/dex/storage"
	"github.com/dexidp/dex/storage/memory"
	"github.com/dexidp/dex/storage/sql"
)

const usage = "usage: dex serve CONFIG"

func main() {
	if len(os.Args) != 3 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err := serve(os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "dex: %v\n", err)
		os.Exit(1)
	}
}

// config is the part of cmd/dex's Config that this main understands.
type config struct {
	Issuer           string           `json:"issuer"`
	Storage          storageConfig    `json:"storage"`
	Web              webConfig        `json:"web"`
	Logger           loggerConfig     `json:"logger"`
	OAuth2           oauth2Config     `json:"oauth2"`
	Signer           signerConfig     `json:"signer"`
	Expiry           expiryConfig     `json:"expiry"`
	Sessions         *sessionsConfig  `json:"sessions"`
	EnablePasswordDB bool             `json:"enablePasswordDB"`
	StaticPasswords  []staticPassword `json:"staticPasswords"`
	StaticClients    []storage.Client `json:"staticClients"`
}

type storageConfig struct {
	Type   string          `json:"type"`
	Config json.RawMessage `json:"config"`
}

type webConfig struct {
	HTTP string `json:"http"`
}

type loggerConfig struct {
	Level  slog.Level `json:"level"`
	Format string     `json:"format"`
}

type oauth2Config struct {
	SkipApprovalScreen    bool     `json:"skipApprovalScreen"`
	AlwaysShowLoginScreen bool     `json:"alwaysShowLoginScreen"`
	ResponseTypes         []string `json:"responseTypes"`
	GrantTypes            []string `json:"grantTypes"`
}

type signerConfig struct {
	Type   string             `json:"type"`
	Config signer.LocalConfig `json:"config"`
}

type expiryConfig struct {
	SigningKeys   string              `json:"signingKeys"`
	IDTokens      string              `json:"idTokens"`
	AuthRequests  string              `json:"authRequests"`
	RefreshTokens refreshTokensConfig `json:"refreshTokens"`
}

type refreshTokensConfig struct {
	DisableRotation   bool   `json:"disableRotation"`
	ReuseInterval     string `json:"reuseInterval"`
	AbsoluteLifetime  string `json:"absoluteLifetime"`
	ValidIfNotUsedFor string `json:"validIfNotUsedFor"`
}

type sessionsConfig struct {
	CookieName                 string `json:"cookieName"`
	AbsoluteLifetime           string `json:"absoluteLifetime"`
	ValidIfNotUsedFor          string `json:"validIfNotUsedFor"`
	RememberMeCheckedByDefault *bool  `json:"rememberMeCheckedByDefault"`
	CookieEncryptionKey        string `json:"cookieEncryptionKey"`
	SSOSharedWithDefault       string `json:"ssoSharedWithDefault"`
}

type staticPassword struct {
	Email             string   `json:"email"`
	Username          string   `json:"username"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferredUsername"`
	EmailVerified     *bool    `json:"emailVerified"`
	UserID            string   `json:"userID"`
	Hash              string   `json:"hash"`
	Groups            []string `json:"groups"`
}

// decodeStrict decodes JSON into v, rejecting unknown keys and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the configuration")
	}
	return nil
}

func readConfig(path string) (*config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	var c config
	if err := decodeStrict(j, &c); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	var problems []string
	if c.Issuer == "" {
		problems = append(problems, "no issuer")
	}
	if c.Web.HTTP == "" {
		problems = append(problems, "no web.http address")
	}
	if len(c.StaticPasswords) > 0 && !c.EnablePasswordDB {
		problems = append(problems, "staticPasswords without enablePasswordDB")
	}
	if c.Sessions != nil && !featureflags.SessionsEnabled.Enabled() {
		problems = append(problems, "sessions config requires DEX_SESSIONS_ENABLED=true")
	}
	for _, cl := range c.StaticClients {
		if cl.ID == "" || cl.Name == "" {
			problems = append(problems, "a static client needs id and name")
		}
		if cl.IDEnv != "" || cl.SecretEnv != "" {
			problems = append(problems, fmt.Sprintf("client %q: idEnv and secretEnv are not supported", cl.ID))
		}
		if cl.Secret == "" && !cl.Public {
			problems = append(problems, fmt.Sprintf("client %q: no secret", cl.ID))
		}
		if err := storage.ValidateRefreshTokenLifetime(cl.RefreshTokenLifetime); err != nil {
			problems = append(problems, fmt.Sprintf("client %q: %v", cl.ID, err))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid config %s: %s", path, strings.Join(problems, "; "))
	}
	return &c, nil
}

func newLogger(c loggerConfig) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: c.Level}
	switch strings.ToLower(c.Format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("logger.format %q: want text or json", c.Format)
}

func openStorage(c storageConfig, logger *slog.Logger) (storage.Storage, error) {
	cfg := c.Config
	if len(cfg) == 0 || string(cfg) == "null" {
		cfg = []byte("{}")
	}
	switch c.Type {
	case "memory":
		var m memory.Config
		if err := decodeStrict(cfg, &m); err != nil {
			return nil, fmt.Errorf("storage.config: %w", err)
		}
		return m.Open(logger)
	case "sqlite3":
		// storage/sql's SQLite3 needs cgo; without it Open says so.
		var s sql.SQLite3
		if err := decodeStrict(cfg, &s); err != nil {
			return nil, fmt.Errorf("storage.config: %w", err)
		}
		return s.Open(logger)
	}
	return nil, fmt.Errorf("storage.type %q: want memory or sqlite3", c.Type)
}

func (p staticPassword) toStorage() (storage.Password, error) {
	hash := []byte(p.Hash)
	if _, err := bcrypt.Cost(hash); err != nil {
		// Like cmd/dex, accept a base64-encoded bcrypt hash too.
		dec, derr := base64.StdEncoding.DecodeString(p.Hash)
		if derr != nil {
			return storage.Password{}, fmt.Errorf("password of %q: malformed bcrypt hash: %v", p.Email, err)
		}
		if _, err := bcrypt.Cost(dec); err != nil {
			return storage.Password{}, fmt.Errorf("password of %q: malformed bcrypt hash: %v", p.Email, err)
		}
		hash = dec
	}
	return storage.Password{
		Email: p.Email, Hash: hash, Username: p.Username, Name: p.Name,
		PreferredUsername: p.PreferredUsername, EmailVerified: p.EmailVerified,
		UserID: p.UserID, Groups: p.Groups,
	}, nil
}

// sessionConfig mirrors cmd/dex's parseSessionConfig: its defaults, and the
// same checks.
func sessionConfig(s *sessionsConfig) (*session.Config, error) {
	sc := &session.Config{
		CookieName:                 "dex_session",
		AbsoluteLifetime:           24 * time.Hour,
		ValidIfNotUsedFor:          time.Hour,
		RememberMeCheckedByDefault: true,
	}
	if s != nil {
		if s.CookieName != "" {
			sc.CookieName = s.CookieName
		}
		var err error
		if s.AbsoluteLifetime != "" {
			if sc.AbsoluteLifetime, err = time.ParseDuration(s.AbsoluteLifetime); err != nil {
				return nil, fmt.Errorf("sessions.absoluteLifetime: %w", err)
			}
		}
		if s.ValidIfNotUsedFor != "" {
			if sc.ValidIfNotUsedFor, err = time.ParseDuration(s.ValidIfNotUsedFor); err != nil {
				return nil, fmt.Errorf("sessions.validIfNotUsedFor: %w", err)
			}
		}
		if s.RememberMeCheckedByDefault != nil {
			sc.RememberMeCheckedByDefault = *s.RememberMeCheckedByDefault
		}
		sc.CookieEncryptionKey = []byte(s.CookieEncryptionKey)
		sc.SSOSharedWithDefault = s.SSOSharedWithDefault
	}
	switch {
	case sc.AbsoluteLifetime <= 0 || sc.ValidIfNotUsedFor <= 0:
		return nil, errors.New("sessions: lifetimes must be positive")
	case sc.ValidIfNotUsedFor > sc.AbsoluteLifetime:
		return nil, errors.New("sessions: validIfNotUsedFor exceeds absoluteLifetime")
	}
	if k := len(sc.CookieEncryptionKey); k != 0 && k != 16 && k != 24 && k != 32 {
		return nil, fmt.Errorf("sessions.cookieEncryptionKey: %d bytes, want 16, 24 or 32", k)
	}
	switch sc.SSOSharedWithDefault {
	case "", "none", "all":
	default:
		return nil, fmt.Errorf("sessions.ssoSharedWithDefault %q: want none or all", sc.SSOSharedWithDefault)
	}
	return sc, nil
}

func parseDuration(key, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return d, nil
}

func serve(path string) error {
	c, err := readConfig(path)
	if err != nil {
		return err
	}
	logger, err := newLogger(c.Logger)
	if err != nil {
		return err
	}
	logger.Info("gatehouse tools/dex main (Dex server without gRPC API)", "issuer", c.Issuer)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s, err := openStorage(c.Storage, logger)
	if err != nil {
		return fmt.Errorf("opening storage: %w", err)
	}
	defer s.Close()

	// Static clients, passwords and connectors overlay the storage, as in
	// cmd/dex's runServe.
	if len(c.StaticClients) > 0 {
		s = storage.WithStaticClients(s, c.StaticClients)
	}
	if len(c.StaticPasswords) > 0 {
		passwords := make([]storage.Password, len(c.StaticPasswords))
		for i, p := range c.StaticPasswords {
			if passwords[i], err = p.toStorage(); err != nil {
				return err
			}
		}
		s = storage.WithStaticPasswords(s, passwords, logger)
	}
	var conns []storage.Connector
	if c.EnablePasswordDB {
		conns = append(conns, storage.Connector{
			ID: connectors.LocalConnector, Name: "Email", Type: connectors.LocalConnector,
		})
	}
	s = storage.WithStaticConnectors(s, conns)
	sessions := featureflags.SessionsEnabled.Enabled()
	if !sessions {
		s = refreshOutsideLock{s} // see storage.go
	}

	now := func() time.Time { return time.Now().UTC() }

	idTokensValidFor, err := parseDuration("expiry.idTokens", c.Expiry.IDTokens, 24*time.Hour)
	if err != nil {
		return err
	}
	local := c.Signer.Config
	switch c.Signer.Type {
	case "local":
		if local.KeysRotationPeriod == "" {
			return errors.New("signer.config.keysRotationPeriod must be specified")
		}
	case "":
		// cmd/dex's default: expiry.signingKeys, else 6h.
		local = signer.LocalConfig{KeysRotationPeriod: c.Expiry.SigningKeys}
		if local.KeysRotationPeriod == "" {
			local.KeysRotationPeriod = "6h"
		}
	default:
		return fmt.Errorf("signer.type %q: want local", c.Signer.Type)
	}
	sig, err := local.Open(ctx, s, idTokensValidFor, now, logger)
	if err != nil {
		return fmt.Errorf("opening the local signer: %w", err)
	}

	grantTypes := c.OAuth2.GrantTypes
	if len(grantTypes) == 0 {
		// cmd/dex's default list.
		grantTypes = []string{
			"authorization_code", "implicit", "password", "refresh_token",
			"urn:ietf:params:oauth:grant-type:device_code",
			"urn:ietf:params:oauth:grant-type:token-exchange",
		}
	}
	refreshPolicy, err := tokens.NewRefreshTokenPolicy(logger,
		c.Expiry.RefreshTokens.DisableRotation,
		c.Expiry.RefreshTokens.ValidIfNotUsedFor,
		c.Expiry.RefreshTokens.AbsoluteLifetime,
		c.Expiry.RefreshTokens.ReuseInterval)
	if err != nil {
		return fmt.Errorf("expiry.refreshTokens: %w", err)
	}
	authRequestsValidFor, err := parseDuration("expiry.authRequests", c.Expiry.AuthRequests, 0)
	if err != nil {
		return err
	}

	health := gosundheit.New()
	defer health.DeregisterAll()
	sc := server.Config{
		Issuer:                     c.Issuer,
		Storage:                    s,
		AllowedGrantTypes:          grantTypes,
		SupportedResponseTypes:     c.OAuth2.ResponseTypes,
		SkipApprovalScreen:         c.OAuth2.SkipApprovalScreen,
		AlwaysShowLoginScreen:      c.OAuth2.AlwaysShowLoginScreen,
		IDTokensValidFor:           idTokensValidFor,
		AuthRequestsValidFor:       authRequestsValidFor,
		RefreshTokenPolicy:         refreshPolicy,
		Now:                        now,
		Logger:                     logger,
		Signer:                     sig,
		PrometheusRegistry:         prometheus.NewRegistry(),
		HealthChecker:              health,
		ContinueOnConnectorFailure: featureflags.ContinueOnConnectorFailure.Enabled(),
		Headers:                    http.Header{},
	}
	if sessions {
		if sc.SessionConfig, err = sessionConfig(c.Sessions); err != nil {
			return err
		}
		logger.Info("sessions enabled", "absolute_lifetime", sc.SessionConfig.AbsoluteLifetime,
			"valid_if_not_used_for", sc.SessionConfig.ValidIfNotUsedFor)
	}
	if err := health.RegisterCheck(&checks.CustomCheck{
		CheckName: "storage",
		CheckFunc: storage.NewCustomHealthCheckFunc(s, now),
	}, gosundheit.ExecutionPeriod(15*time.Second), gosundheit.InitiallyPassing(true)); err != nil {
		return err
	}

	srv, err := server.NewServer(ctx, sc)
	if err != nil {
		return fmt.Errorf("initializing the server: %w", err)
	}

	l, err := net.Listen("tcp", c.Web.HTTP)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.Web.HTTP, err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("listening", "server", "http", "address", l.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serving http: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}
