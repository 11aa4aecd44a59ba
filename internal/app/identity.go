package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/assertion"
	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
	"github.com/gatehouse-proxy/gatehouse/internal/idp"
	"github.com/gatehouse-proxy/gatehouse/internal/oidc"
	"github.com/gatehouse-proxy/gatehouse/internal/session"
	"github.com/gatehouse-proxy/gatehouse/internal/token"
)

// builtinClientID is gatehouse's client at its own built-in provider.
const builtinClientID = "gatehouse"

// identityState is what outlives a configuration reload: revocations, the
// keys generated when none are configured, and the built-in provider (its
// sign-in sessions and refresh tokens are in memory).
type identityState struct {
	revocations *session.RevocationList

	once          sync.Once
	sessionKey    []byte
	assertionKey  assertion.Key
	builtinSecret string

	mu     sync.Mutex // guards idp, idpIssuer
	idp    *idp.Provider
	idpIss string
}

func (s *identityState) init() error {
	var err error
	s.once.Do(func() {
		s.sessionKey = make([]byte, 32)
		rand.Read(s.sessionKey)
		var b [32]byte
		rand.Read(b[:])
		s.builtinSecret = base64.RawURLEncoding.EncodeToString(b[:])
		s.assertionKey, err = assertion.GenerateKey("ephemeral")
	})
	return err
}

// buildGate builds the authentication gate for a configuration.
func (a *App) buildGate(ctx context.Context, cfg *config.Config) (*auth.Gate, error) {
	st := &a.identity
	if err := st.init(); err != nil {
		return nil, err
	}
	ic := cfg.Identity
	publicURL := &url.URL{Scheme: "https", Host: "localhost"} // no sign-in configured: never shown
	if cfg.PublicURL.URL != nil {
		publicURL = &url.URL{Scheme: cfg.PublicURL.Scheme, Host: cfg.PublicURL.Host}
	}
	origin := publicURL.Scheme + "://" + publicURL.Host

	// Session keys.
	var keys []session.Key
	for i, k := range ic.Session.Keys {
		v, err := a.secrets.Resolve(ctx, k.Secret.Ref)
		if err != nil {
			return nil, fmt.Errorf("identity.session.keys[%d].secret: %w", i, err)
		}
		b, err := decodeKey(string(v.Reveal()))
		if err != nil {
			return nil, fmt.Errorf("identity.session.keys[%d].secret: %w", i, err)
		}
		keys = append(keys, session.Key{ID: k.ID, Secret: b})
	}
	if len(keys) == 0 {
		if cfg.NeedsIdentity() {
			a.log.Warn("identity.session.keys is not set: sessions are sealed with a random key and end when gatehouse restarts")
		}
		keys = []session.Key{{ID: "eph", Secret: st.sessionKey}}
	}
	codec, err := session.NewCodec(keys)
	if err != nil {
		return nil, fmt.Errorf("identity.session.keys: %w", err)
	}
	store, err := session.NewCookieStore(session.CookieOptions{
		Codec:            codec,
		Name:             ic.Session.CookieName,
		IdleTimeout:      ic.Session.IdleTimeout.D(),
		AbsoluteLifetime: ic.Session.AbsoluteLifetime.D(),
		Revocations:      st.revocations,
	})
	if err != nil {
		return nil, fmt.Errorf("identity.session: %w", err)
	}

	// Assertion signer.
	var akeys []assertion.Key
	for i, k := range ic.Assertion.Keys {
		v, err := a.secrets.Resolve(ctx, k.PrivateKey.Ref)
		if err != nil {
			return nil, fmt.Errorf("identity.assertion.keys[%d].private_key: %w", i, err)
		}
		key, err := assertion.ParseKeyPEM(k.ID, v.Reveal())
		if err != nil {
			return nil, fmt.Errorf("identity.assertion.keys[%d].private_key: %w", i, err)
		}
		akeys = append(akeys, key)
	}
	if len(akeys) == 0 {
		if cfg.NeedsIdentity() {
			a.log.Warn("identity.assertion.keys is not set: assertions are signed with a random key that changes at every restart")
		}
		akeys = []assertion.Key{st.assertionKey}
	}
	signer, err := assertion.New(assertion.Options{Issuer: origin, Keys: akeys, TTL: ic.Assertion.TTL.D()})
	if err != nil {
		return nil, fmt.Errorf("identity.assertion: %w", err)
	}

	// Bearer tokens.
	var verifier *token.Verifier
	if len(ic.Bearer) > 0 {
		opts := token.Options{RejectIssuers: []string{origin}, Logger: a.log}
		for _, b := range ic.Bearer {
			algs := b.Algorithms
			if len(algs) == 0 {
				algs = []string{"RS256"}
			}
			opts.Issuers = append(opts.Issuers, token.Issuer{
				Issuer: b.Issuer, JWKSURL: b.JWKSURL.String(), Audiences: b.Audiences,
				Algorithms: algs, RequireAccessTokenType: b.RequireAccessTokenType,
			})
		}
		if verifier, err = token.New(opts); err != nil {
			return nil, fmt.Errorf("identity.bearer: %w", err)
		}
	}

	// Providers.
	var providers []*oidc.Provider
	display := map[string]string{}
	for i, pc := range ic.Providers {
		secret := ""
		if !pc.ClientSecret.IsZero() {
			v, err := a.secrets.Resolve(ctx, pc.ClientSecret.Ref)
			if err != nil {
				return nil, fmt.Errorf("identity.providers[%d].client_secret: %w", i, err)
			}
			secret = string(v.Reveal())
		}
		p, err := oidc.NewProvider(oidc.ProviderOptions{
			Name: pc.Name, Issuer: pc.Issuer.String(), ClientID: pc.ClientID, ClientSecret: secret,
			Scopes: pc.Scopes, AuthParams: pc.AuthParams, GroupsClaim: pc.GroupsClaim,
			Algorithms: pc.Algorithms, Logger: a.log,
		})
		if err != nil {
			return nil, err
		}
		providers = append(providers, p)
		display[pc.Name] = pc.DisplayName
	}
	var idpHandler http.Handler
	if b := ic.Builtin; b != nil {
		op, err := a.builtinProvider(cfg, origin)
		if err != nil {
			return nil, fmt.Errorf("identity.builtin: %w", err)
		}
		idpHandler = op
		p, err := oidc.NewProvider(oidc.ProviderOptions{
			Name: config.BuiltinProvider, Issuer: op.Issuer(), ClientID: builtinClientID,
			ClientSecret: st.builtinSecret,
			Scopes:       []string{"openid", "email", "profile", "groups", "offline_access"},
			HTTPClient:   &http.Client{Transport: handlerTransport{op}},
			Logger:       a.log,
		})
		if err != nil {
			return nil, err
		}
		providers = append(providers, p)
		display[config.BuiltinProvider] = b.DisplayName
	}

	keep := slices.Clone(ic.Session.KeepClaims)
	keepAccessToken := false
	for i := range cfg.Routes {
		keep = append(keep, cfg.Routes[i].ClaimNames()...)
		keepAccessToken = keepAccessToken || cfg.Routes[i].PassAccessToken
	}
	slices.Sort(keep)
	keep = slices.Compact(keep)
	h := cfg.Headers
	return auth.New(auth.Options{
		PublicURL:        publicURL,
		Providers:        providers,
		DisplayNames:     display,
		Store:            store,
		Codec:            codec,
		CookieName:       ic.Session.CookieName,
		AbsoluteLifetime: ic.Session.AbsoluteLifetime.D(),
		RefreshBefore:    ic.Session.RefreshBefore.D(),
		KeepClaims:       keep,
		KeepAccessToken:  keepAccessToken,
		Bearer:           verifier,
		Signer:           signer,
		Headers:          auth.Headers{User: h.User, Email: h.Email, Groups: h.Groups, Assertion: h.Assertion},
		IDP:              idpHandler,
		Log:              a.log,
	})
}

// builtinProvider returns the built-in OpenID provider, created at the first
// configuration that has one and kept across reloads (its sign-in sessions
// and refresh tokens live in it); a reload only replaces its users.
func (a *App) builtinProvider(cfg *config.Config, origin string) (*idp.Provider, error) {
	st := &a.identity
	b := cfg.Identity.Builtin
	var users *idp.Users
	var err error
	if b.DemoUsers {
		users, err = idp.DemoUsers()
	} else {
		path := b.UsersFile
		if !filepath.IsAbs(path) && a.configPath != "" {
			path = filepath.Join(filepath.Dir(a.configPath), path)
		}
		users, err = idp.LoadUsers(path)
	}
	if err != nil {
		return nil, err
	}
	issuer := origin + auth.PathIDP
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.idp != nil {
		if st.idpIss != issuer {
			return nil, errors.New("public_url changed: restart gatehouse to move the built-in provider")
		}
		st.idp.SetUsers(users)
		return st.idp, nil
	}
	// Every origin users may sign in on: the public URL and each exact
	// route host on the same scheme.
	origins := []string{origin}
	scheme := strings.SplitN(origin, "://", 2)[0]
	for _, r := range cfg.Routes {
		if r.Host != "" && !strings.HasPrefix(r.Host, "*.") {
			origins = append(origins, scheme+"://"+r.Host)
		}
	}
	slices.Sort(origins)
	origins = slices.Compact(origins)
	client := idp.Client{ID: builtinClientID, Secret: st.builtinSecret, BackchannelLogoutURI: origin + auth.PathBackchannel}
	for _, o := range origins {
		client.RedirectURIs = append(client.RedirectURIs, o+auth.PathCallback)
		client.PostLogoutRedirectURIs = append(client.PostLogoutRedirectURIs, o+auth.PathLoggedOut)
	}
	op, err := idp.NewProvider(idp.ProviderOptions{
		Issuer:  issuer,
		Users:   users,
		Clients: []idp.Client{client},
		ClientIP: func(r *http.Request) netip.Addr {
			if rec := audit.FromContext(r.Context()); rec != nil {
				return rec.ClientIP
			}
			return netip.Addr{}
		},
		// Back-channel logout tokens are delivered in-process, through
		// the same audited handler as any request.
		HTTPClient: &http.Client{
			Transport:     handlerTransport{a.public()},
			Timeout:       5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Log: a.log,
	})
	if err != nil {
		return nil, err
	}
	st.idp, st.idpIss = op, issuer
	return op, nil
}

// BuiltinProvider returns the built-in provider, nil when none is
// configured (tests rotate its keys and end its sessions).
func (a *App) BuiltinProvider() *idp.Provider {
	a.identity.mu.Lock()
	defer a.identity.mu.Unlock()
	return a.identity.idp
}

// decodeKey reads a 32-byte key written as base64 (standard or URL, with
// or without padding) or hex.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != 32 {
				return nil, fmt.Errorf("want 32 bytes, got %d (make one with: openssl rand -base64 32)", len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("not base64 or hex (make one with: openssl rand -base64 32)")
}

// handlerTransport is an http.RoundTripper that serves requests with a
// handler in this process: gatehouse's relying party talks to its own
// built-in provider, and the provider delivers back-channel logout tokens,
// without a network hop (the public URL may not even be reachable from
// gatehouse's host).
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sr := req.Clone(req.Context())
	sr.RequestURI = req.URL.RequestURI()
	sr.Host = req.URL.Host
	sr.RemoteAddr = "127.0.0.1:0"
	sr.Proto, sr.ProtoMajor, sr.ProtoMinor = "HTTP/1.1", 1, 1
	if sr.Body == nil {
		sr.Body = http.NoBody
	}
	rw := &memResponse{header: http.Header{}}
	t.h.ServeHTTP(rw, sr)
	if req.Body != nil {
		req.Body.Close()
	}
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rw.header,
		Body:          io.NopCloser(&rw.body),
		ContentLength: int64(rw.body.Len()),
		Request:       req,
	}, nil
}

// memResponse is the ResponseWriter of handlerTransport.
type memResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (m *memResponse) Header() http.Header { return m.header }

func (m *memResponse) WriteHeader(status int) {
	if m.status == 0 {
		m.status = status
	}
}

func (m *memResponse) Write(b []byte) (int, error) {
	if m.status == 0 {
		m.status = http.StatusOK
	}
	if m.body.Len()+len(b) > 4<<20 {
		return 0, errors.New("in-process response larger than 4 MiB")
	}
	return m.body.Write(b)
}
