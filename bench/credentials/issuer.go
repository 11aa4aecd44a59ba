package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// issuerKeyID is the kid of the issuer's one signing key.
const issuerKeyID = "bench-rsa-1"

// runIssuer is a minimal OpenID issuer of access tokens: a discovery
// document (issuer, jwks_uri; oauth2-proxy's --extra-jwt-issuers reads it)
// and the JWKS, on a loopback address, with a fresh RSA 2048 key. It writes
// one access token for the bench user to -token-file before it serves, and
// serves until SIGTERM or SIGINT.
func runIssuer(args []string) error {
	fs := flag.NewFlagSet("issuer", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18085", "loopback host:port to serve on")
	audience := fs.String("audience", "", "the token's aud: an API audience, not an OIDC client ID (required)")
	tokenFile := fs.String("token-file", "", "where the access token is written (required)")
	ttl := fs.Duration("ttl", 2*time.Hour, "the token's lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *audience == "" || *tokenFile == "" {
		return errors.New("-audience and -token-file are required")
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: the bench issuer serves on a loopback IP only", *addr)
	}
	issuer := "http://" + *addr

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	jwk := jose.JSONWebKey{Key: key, KeyID: issuerKeyID, Algorithm: string(jose.RS256), Use: "sig"}
	raw, err := mintToken(jwk, issuer, *audience, time.Now(), *ttl)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(*tokenFile, []byte(raw+"\n")); err != nil {
		return err
	}

	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}})
	if err != nil {
		return err
	}
	discovery, err := json.Marshal(map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              issuer + "/jwks.json",
		"authorization_endpoint":                issuer + "/authorize", // not served: no logins here
		"token_endpoint":                        issuer + "/token",     // not served
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	serveJSON := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		}
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", serveJSON(discovery))
	mux.HandleFunc("GET /jwks.json", serveJSON(jwks))
	mux.HandleFunc("GET /.well-known/jwks.json", serveJSON(jwks))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "credentials issuer: serving %s\n", issuer)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// mintToken signs an access token for the bench user: typ JWT, RS256, and
// the claims both gatehouse (identity.bearer) and oauth2-proxy
// (--extra-jwt-issuers) read. It has no nonce, at_hash or c_hash, so that
// gatehouse takes it for an access token, and email_verified is true, which
// oauth2-proxy requires when the claim is present.
func mintToken(key jose.JSONWebKey, issuer, audience string, now time.Time, ttl time.Duration) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", key.KeyID))
	if err != nil {
		return "", err
	}
	claims := map[string]any{
		"iss":                issuer,
		"sub":                benchSubject,
		"aud":                audience,
		"iat":                now.Unix(),
		"exp":                now.Add(ttl).Unix(),
		"email":              benchEmail,
		"email_verified":     true,
		"preferred_username": benchUsername,
		"name":               benchName,
		"groups":             benchGroups,
	}
	return jwt.Signed(sig).Claims(claims).Serialize()
}

// writeFileAtomic writes data to path through a temporary file and a rename,
// so that a reader polling for path never sees a partial token.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
