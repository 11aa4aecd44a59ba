package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// clientFlags collects repeated -client ID=SECRET=REDIRECT_URI flags.
type clientFlags []map[string]any

func (c *clientFlags) String() string { return fmt.Sprint(len(*c), " clients") }

func (c *clientFlags) Set(v string) error {
	parts := strings.SplitN(v, "=", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return errors.New("want ID=SECRET=REDIRECT_URI")
	}
	*c = append(*c, map[string]any{
		"id": parts[0], "name": parts[0], "secret": parts[1],
		"redirectURIs": []string{parts[2]},
	})
	return nil
}

// runDexConfig writes a configuration for bin/dex (tools/dex) in the form
// internal/testenv writes it: memory storage, the password connector with
// the bench user, the given clients, and an ID token lifetime longer than
// any bench run, so that no relying party needs to refresh during it.
func runDexConfig(args []string) error {
	fs := flag.NewFlagSet("dex-config", flag.ContinueOnError)
	issuer := fs.String("issuer", "", "Dex's issuer URL, http://127.0.0.1:PORT/dex (required)")
	out := fs.String("out", "", "the configuration file to write (required)")
	var clients clientFlags
	fs.Var(&clients, "client", "a client, ID=SECRET=REDIRECT_URI (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *issuer == "" || *out == "" {
		return errors.New("-issuer and -out are required")
	}
	u, err := url.Parse(*issuer)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return fmt.Errorf("-issuer %q: want http://127.0.0.1:PORT/PATH", *issuer)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-issuer %q: the bench Dex serves on a loopback IP only", *issuer)
	}
	// Dex refuses a bcrypt cost below the default (server/passwords.CheckCost).
	hash, err := bcrypt.GenerateFromPassword([]byte(benchPassword), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	cfg := map[string]any{
		"issuer":  *issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": u.Host},
		"logger":  map[string]any{"level": "info"},
		"oauth2": map[string]any{
			"skipApprovalScreen": true,
			"responseTypes":      []string{"code"},
			"grantTypes":         []string{"authorization_code", "refresh_token"},
		},
		"signer": map[string]any{"type": "local", "config": map[string]any{"keysRotationPeriod": "24h"}},
		"expiry": map[string]any{"idTokens": "12h"},
		// Dex sessions need DEX_SESSIONS_ENABLED=true; run.sh does not
		// set it, so there is no "sessions" key.
		"enablePasswordDB": true,
		"staticPasswords": []map[string]any{{
			"email": benchEmail, "username": benchUsername, "userID": benchSubject,
			"hash": string(hash), "groups": benchGroups,
		}},
		"staticClients": []map[string]any(clients),
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(*out, b, 0o600)
}
