package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/session"
)

// runSession seals a session for the bench user with the key in -key-file
// (32 bytes, base64, as gatehouse's identity.session.keys[].secret reads it)
// and prints the cookie value. The store options must match gatehouse's
// configuration: the cookie name and the key ID are bound into the seal, and
// the idle timeout and absolute lifetime decide how long the value opens.
func runSession(args []string) error {
	fs := flag.NewFlagSet("session", flag.ContinueOnError)
	keyFile := fs.String("key-file", "", "file holding the session key, base64 (required)")
	keyID := fs.String("key-id", "bench", "the key's ID, as in identity.session.keys[].id")
	cookieName := fs.String("cookie-name", "gh_session", "identity.session.cookie_name")
	issuer := fs.String("issuer", "", "the session's issuer: the provider's issuer URL (required)")
	provider := fs.String("provider", "", "the provider's configured name (required)")
	idle := fs.Duration("idle-timeout", 8*time.Hour, "identity.session.idle_timeout")
	lifetime := fs.Duration("absolute-lifetime", 12*time.Hour, "identity.session.absolute_lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keyFile == "" || *issuer == "" || *provider == "" {
		return errors.New("-key-file, -issuer and -provider are required")
	}
	b, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("reading %s: %w", *keyFile, err)
	}
	codec, err := session.NewCodec([]session.Key{{ID: *keyID, Secret: secret}})
	if err != nil {
		return err
	}
	revocations, err := session.NewRevocationList(session.RevocationOptions{})
	if err != nil {
		return err
	}
	store, err := session.NewCookieStore(session.CookieOptions{
		Codec: codec, Name: *cookieName, IdleTimeout: *idle, AbsoluteLifetime: *lifetime,
		Revocations: revocations,
	})
	if err != nil {
		return err
	}
	now := time.Now().Truncate(time.Second)
	// The session a login through an OpenID provider leaves, without
	// provider tokens: no refresh token means no refresh during the run.
	// Extra holds what gatehouse keeps of the ID token: the username and
	// email_verified (internal/auth's Extra keys "u" and "ev").
	s := &session.Session{
		ID:        session.NewID(),
		Issuer:    *issuer,
		Subject:   benchSubject,
		Provider:  *provider,
		Email:     benchEmail,
		Name:      benchName,
		Groups:    benchGroups,
		CreatedAt: now,
		LastSeen:  now,
		Extra:     map[string]string{"u": benchUsername, "ev": "1"},
	}
	v, err := store.Save(context.Background(), s, now)
	if err != nil {
		return err
	}
	// Check the value opens as gatehouse will open it.
	if _, err := store.Load(context.Background(), v, now); err != nil {
		return fmt.Errorf("the sealed session does not open: %w", err)
	}
	fmt.Println(v)
	return nil
}
