package idp

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	// authRequestTTL is how long a login may take, from /authorize to
	// the code exchange.
	authRequestTTL = 10 * time.Minute
	// codeTTL is how long an authorization code is valid; it is also
	// single use (RFC 6749, section 4.1.2).
	codeTTL = time.Minute
	// maxAuthRequests bounds the pending logins anyone can create by
	// calling /authorize; beyond it new ones are refused until old ones
	// expire.
	maxAuthRequests = 10000
	// sweepEvery is how often expired entries are pruned, at the latest
	// on the next write after it.
	sweepEvery = 30 * time.Second
)

var (
	errNotFound      = errors.New("not found or expired")
	errSessionEnded  = errors.New("session ended")
	errInvalidClient = errors.New("invalid client credentials")
)

// storage is the provider's op.Storage, all in memory. Tokens are stored
// by ID (access tokens, whose opaque value op seals around the ID) or by
// SHA-256 (codes and refresh tokens), never in the clear.
type storage struct {
	p *Provider

	mu           sync.Mutex
	authReqs     map[string]*authRequest  // by ID; guarded by mu
	codes        map[string]codeEntry     // by hash of the code; guarded by mu
	spentCodes   map[string]spent         // redeemed codes by hash, to detect replay; guarded by mu
	access       map[string]*accessToken  // by ID; guarded by mu
	refresh      map[string]*refreshToken // by hash of the token; guarded by mu
	spentRefresh map[string]spent         // rotated refresh tokens by hash, to detect reuse; guarded by mu
	sessions     map[string]*session      // OP sessions by sid; guarded by mu
	nextSweep    time.Time                // guarded by mu
}

type codeEntry struct {
	authReqID string
	expires   time.Time
}

// spent remembers a used code or rotated refresh token: presenting it
// again revokes every token of its grant (RFC 6749, section 4.1.2; RFC
// 9700, section 4.14.2).
type spent struct {
	grant   string
	expires time.Time
}

// session is an OP session: one successful login of subject to the client
// clientID. Its sid is its key in storage.sessions.
type session struct {
	subject, clientID string
	expires           time.Time
}

type accessToken struct {
	id, grant, sid, clientID, subject, username string
	scopes                                      []string
	expires                                     time.Time
}

type refreshToken struct {
	grant, sid, clientID, subject, username string
	scopes                                  []string // as granted; a refresh may narrow the access token's
	authTime, expires                       time.Time
}

// logoutTarget is one client to notify of an ended OP session.
type logoutTarget struct {
	clientID, subject, sid string
}

func newStorage(p *Provider) *storage {
	return &storage{
		p:            p,
		authReqs:     map[string]*authRequest{},
		codes:        map[string]codeEntry{},
		spentCodes:   map[string]spent{},
		access:       map[string]*accessToken{},
		refresh:      map[string]*refreshToken{},
		spentRefresh: map[string]spent{},
		sessions:     map[string]*session{},
	}
}

// randomID returns n random bytes, base64url encoded.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(s string) string {
	sum := sha256.Sum256([]byte(s))
	return string(sum[:])
}

// sweep prunes expired entries, at most every sweepEvery. s.mu must be held.
func (s *storage) sweep(now time.Time) {
	if now.Before(s.nextSweep) {
		return
	}
	s.nextSweep = now.Add(sweepEvery)
	for id, ar := range s.authReqs {
		if ar.expired(now) {
			delete(s.authReqs, id)
		}
	}
	for h, c := range s.codes {
		if !now.Before(c.expires) {
			delete(s.codes, h)
		}
	}
	for _, m := range []map[string]spent{s.spentCodes, s.spentRefresh} {
		for h, sp := range m {
			if !now.Before(sp.expires) {
				delete(m, h)
			}
		}
	}
	for id, at := range s.access {
		if !now.Before(at.expires) {
			delete(s.access, id)
		}
	}
	for h, rt := range s.refresh {
		if !now.Before(rt.expires) {
			delete(s.refresh, h)
		}
	}
	for sid, se := range s.sessions {
		if !now.Before(se.expires) {
			delete(s.sessions, sid)
		}
	}
}

// revokeGrant deletes every token issued from one authorization. s.mu
// must be held.
func (s *storage) revokeGrant(grant string) {
	for id, at := range s.access {
		if at.grant == grant {
			delete(s.access, id)
		}
	}
	for h, rt := range s.refresh {
		if rt.grant == grant {
			delete(s.refresh, h)
		}
	}
}

// endSessions ends the subject's OP sessions (only the one with sid, if
// sid is set) and returns whom to notify.
func (s *storage) endSessions(subject, sid string) []logoutTarget {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logoutTarget
	ended := map[string]bool{}
	for id, se := range s.sessions {
		if se.subject != subject || (sid != "" && id != sid) {
			continue
		}
		out = append(out, logoutTarget{clientID: se.clientID, subject: subject, sid: id})
		ended[id] = true
		delete(s.sessions, id)
	}
	for id, at := range s.access {
		if ended[at.sid] || (sid == "" && at.subject == subject) {
			delete(s.access, id)
		}
	}
	for h, rt := range s.refresh {
		if ended[rt.sid] || (sid == "" && rt.subject == subject) {
			delete(s.refresh, h)
		}
	}
	for id, ar := range s.authReqs {
		if ar.done && (ended[ar.sid] || (sid == "" && ar.subject == subject)) {
			delete(s.authReqs, id)
		}
	}
	slices.SortFunc(out, func(a, b logoutTarget) int {
		return cmp.Or(cmp.Compare(a.clientID, b.clientID), cmp.Compare(a.sid, b.sid))
	})
	return out
}

// beginLogin binds a live, pending auth request to a new login cookie
// value, which it returns with a snapshot of the request.
func (s *storage) beginLogin(id string) (*authRequest, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authReqs[id]
	if !ok || ar.done || ar.expired(s.p.now()) {
		return nil, "", false
	}
	v := randomID(32)
	ar.binding = hashToken(v)
	return ar.snapshot(), v, true
}

// pendingLogin returns a snapshot of a live, pending auth request bound
// to the login cookie value.
func (s *storage) pendingLogin(id, cookie string) (*authRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.bound(id, cookie)
	if !ok {
		return nil, false
	}
	return ar.snapshot(), true
}

func (s *storage) bound(id, cookie string) (*authRequest, bool) {
	ar, ok := s.authReqs[id]
	if !ok || ar.done || ar.expired(s.p.now()) || ar.binding == "" || cookie == "" {
		return nil, false
	}
	if subtle.ConstantTimeCompare([]byte(ar.binding), []byte(hashToken(cookie))) != 1 {
		return nil, false
	}
	return ar, true
}

// completeLogin marks the bound auth request as authenticated by u and
// starts a new OP session for it.
func (s *storage) completeLogin(id, cookie string, u *User) (*authRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.bound(id, cookie)
	if !ok {
		return nil, false
	}
	now := s.p.now()
	ar.done = true
	ar.binding = ""
	ar.subject, ar.username = u.Subject, u.Username
	ar.sid = randomID(16)
	ar.authTime = now
	s.sessions[ar.sid] = &session{
		subject:  u.Subject,
		clientID: ar.clientID,
		expires:  now.Add(max(s.p.refreshTTL, authRequestTTL)),
	}
	return ar.snapshot(), true
}

// CreateAuthRequest stores a validated authorization request. op has
// checked the client, redirect_uri, response_type and scopes; this adds
// what the provider requires on top: PKCE with S256 (RFC 9700, section
// 2.1.1), the openid scope, and the query response mode.
func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	switch {
	case r.ResponseType != oidc.ResponseTypeCode:
		return nil, oidc.ErrInvalidRequest().WithDescription("only response_type=code is supported")
	case r.ResponseMode != "" && r.ResponseMode != oidc.ResponseModeQuery:
		return nil, oidc.ErrInvalidRequest().WithDescription("only response_mode=query is supported")
	case r.CodeChallenge == "":
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge with code_challenge_method=S256")
	case r.CodeChallengeMethod != oidc.CodeChallengeMethodS256:
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	case !slices.Contains(r.Scopes, oidc.ScopeOpenID):
		return nil, oidc.ErrInvalidScope().WithDescription("the openid scope is required")
	case slices.Contains(r.Prompt, oidc.PromptNone):
		// Every login shows the form: there is no single sign-on session.
		return nil, oidc.ErrLoginRequired()
	}
	now := s.p.now()
	ar := &authRequest{
		id:           randomID(32),
		created:      now,
		clientID:     r.ClientID,
		redirectURI:  r.RedirectURI,
		scopes:       slices.Clone(r.Scopes),
		state:        r.State,
		nonce:        r.Nonce,
		responseMode: r.ResponseMode,
		challenge:    &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod},
		loginHint:    r.LoginHint,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	if len(s.authReqs) >= maxAuthRequests {
		s.p.log.Warn("idp: too many pending logins; refusing new ones", "limit", maxAuthRequests)
		return nil, oidc.ErrServerError().WithDescription("too many pending logins; try again later")
	}
	s.authReqs[ar.id] = ar
	return ar.snapshot(), nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authReqs[id]
	if !ok || ar.expired(s.p.now()) {
		return nil, errNotFound
	}
	return ar.snapshot(), nil
}

// AuthRequestByCode redeems a code. The code is spent on its first
// presentation, whatever happens next; a second presentation revokes the
// tokens the first one got.
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	h := hashToken(code)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.p.now()
	if sp, ok := s.spentCodes[h]; ok {
		s.revokeGrant(sp.grant)
		s.p.log.Warn("idp: authorization code replayed; revoked the tokens issued for it")
		return nil, errors.New("code already used")
	}
	c, ok := s.codes[h]
	if !ok {
		return nil, errNotFound
	}
	delete(s.codes, h)
	s.spentCodes[h] = spent{grant: c.authReqID, expires: now.Add(authRequestTTL)}
	ar, ok := s.authReqs[c.authReqID]
	if !ok || !ar.done || ar.expired(now) || !now.Before(c.expires) {
		return nil, errNotFound
	}
	return ar.snapshot(), nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.authReqs[id]
	now := s.p.now()
	if !ok || !ar.done || ar.expired(now) {
		return errNotFound
	}
	s.codes[hashToken(code)] = codeEntry{authReqID: id, expires: now.Add(codeTTL)}
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authReqs, id)
	return nil
}

// newAccess stores an access token for a grant. s.mu must be held.
func (s *storage) newAccess(now time.Time, grant, sid, clientID, subject, username string, scopes []string) *accessToken {
	at := &accessToken{
		id: randomID(24), grant: grant, sid: sid, clientID: clientID,
		subject: subject, username: username, scopes: slices.Clone(scopes),
		expires: now.Add(s.p.accessTTL),
	}
	s.access[at.id] = at
	return at
}

func (s *storage) CreateAccessToken(_ context.Context, request op.TokenRequest) (string, time.Time, error) {
	ar, ok := request.(*authRequest)
	if !ok {
		return "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.p.now()
	s.sweep(now)
	if s.sessions[ar.sid] == nil {
		return "", time.Time{}, oidc.ErrInvalidGrant().WithParent(errSessionEnded)
	}
	at := s.newAccess(now, ar.id, ar.sid, ar.clientID, ar.subject, ar.username, ar.scopes)
	return at.id, at.expires, nil
}

// CreateAccessAndRefreshTokens issues tokens for a code (with
// offline_access) or a refresh. A refresh rotates the refresh token: the
// old one is spent atomically, so of two concurrent refreshes with the
// same token only one succeeds.
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, request op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.p.now()
	s.sweep(now)
	var rt *refreshToken
	var accessScopes []string
	switch req := request.(type) {
	case *authRequest:
		rt = &refreshToken{
			grant: req.id, sid: req.sid, clientID: req.clientID, subject: req.subject,
			username: req.username, scopes: slices.Clone(req.scopes), authTime: req.authTime,
		}
		accessScopes = req.scopes
	case *refreshRequest:
		h := hashToken(current)
		old, ok := s.refresh[h]
		if !ok || old.grant != req.grant || !now.Before(old.expires) {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is invalid or was already used")
		}
		delete(s.refresh, h)
		s.spentRefresh[h] = spent{grant: old.grant, expires: now.Add(s.p.refreshTTL)}
		c := *old
		c.scopes = slices.Clone(old.scopes)
		rt = &c
		accessScopes = req.GetScopes()
	default:
		return "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	se := s.sessions[rt.sid]
	if se == nil {
		return "", "", time.Time{}, oidc.ErrInvalidGrant().WithParent(errSessionEnded)
	}
	rt.expires = now.Add(s.p.refreshTTL)
	if se.expires.Before(rt.expires) {
		se.expires = rt.expires
	}
	token := randomID(32)
	s.refresh[hashToken(token)] = rt
	at := s.newAccess(now, rt.grant, rt.sid, rt.clientID, rt.subject, rt.username, accessScopes)
	return at.id, token, at.expires, nil
}

// TokenRequestByRefreshToken looks up a refresh token for the refresh
// grant. A rotated token presented again revokes its whole grant; a token
// of a user no longer in the users file is deleted.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	h := hashToken(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.p.now()
	if sp, ok := s.spentRefresh[h]; ok {
		s.revokeGrant(sp.grant)
		s.p.log.Warn("idp: rotated refresh token reused; revoked its grant")
		return nil, errors.New("refresh token already used")
	}
	rt, ok := s.refresh[h]
	if !ok || !now.Before(rt.expires) {
		return nil, errNotFound
	}
	if u, ok := s.p.users.Load().Lookup(rt.username); !ok || u.Subject != rt.subject {
		delete(s.refresh, h)
		return nil, errors.New("user no longer exists")
	}
	return &refreshRequest{
		grant: rt.grant, sid: rt.sid, clientID: rt.clientID, subject: rt.subject,
		username: rt.username, scopes: slices.Clone(rt.scopes), authTime: rt.authTime,
	}, nil
}

// TerminateSession is op's fallback; end_session goes through
// TerminateSessionFromRequest.
func (s *storage) TerminateSession(ctx context.Context, userID, _ string) error {
	return s.p.deliverLogouts(context.WithoutCancel(ctx), s.endSessions(userID, ""))
}

// TerminateSessionFromRequest serves RP-initiated logout. With a valid
// id_token_hint it ends the OP session named by its sid (or every session
// of its subject if it has none) and delivers back-channel logout tokens.
// Delivery errors are logged, not shown: the user is signed out here
// either way.
func (s *storage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	if req.IDTokenHintClaims != nil && req.UserID != "" {
		targets := s.endSessions(req.UserID, req.IDTokenHintClaims.SessionID)
		if err := s.p.deliverLogouts(context.WithoutCancel(ctx), targets); err != nil {
			s.p.log.Warn("idp: back-channel logout delivery failed", "err", err)
		}
	}
	return req.RedirectURI, nil
}

func (s *storage) RevokeToken(_ context.Context, token, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.access[token]; ok {
		if at.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.access, token)
		return nil
	}
	for _, h := range []string{token, hashToken(token)} {
		if rt, ok := s.refresh[h]; ok {
			if rt.clientID != clientID {
				return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
			}
			s.revokeGrant(rt.grant)
			return nil
		}
	}
	// RFC 7009, section 2.2: an unknown token is not an error.
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	h := hashToken(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[h]
	if !ok || rt.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, h, nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return s.p.keys.current(), nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return s.p.keys.published(), nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if c, ok := s.p.clients[id]; ok {
		return c, nil
	}
	return nil, errors.New("unknown client")
}

// AuthorizeClientIDSecret compares secrets by their SHA-256 in constant
// time, so neither length nor content leaks through timing.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	want := hashToken(randomID(16))
	if c, ok := s.p.clients[id]; ok {
		want = hashToken(c.Secret)
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(hashToken(secret))) != 1 {
		return errInvalidClient
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in op; SetUserinfoFromRequest does
// the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's user claims from the users
// file as it is now, plus the OP session's sid.
func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, request op.IDTokenRequest, scopes []string) error {
	var username, sid string
	switch r := request.(type) {
	case *authRequest:
		username, sid = r.username, r.sid
	case *refreshRequest:
		username, sid = r.username, r.sid
	default:
		return oidc.ErrServerError().WithDescription("unsupported request")
	}
	u, ok := s.p.users.Load().Lookup(username)
	if !ok || u.Subject != request.GetSubject() {
		return oidc.ErrInvalidGrant().WithDescription("user no longer exists")
	}
	setClaims(ui, u, scopes)
	ui.AppendClaims("sid", sid)
	return nil
}

// SetUserinfoFromToken serves the userinfo endpoint: the same user
// claims as the ID token, for a live access token.
func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	at, ok := s.access[tokenID]
	live := ok && s.p.now().Before(at.expires) && at.subject == subject
	var username string
	var scopes []string
	if live {
		username, scopes = at.username, slices.Clone(at.scopes)
	}
	s.mu.Unlock()
	if !live {
		return oidc.ErrInvalidRequest().WithDescription("access token is invalid or expired")
	}
	u, ok := s.p.users.Load().Lookup(username)
	if !ok || u.Subject != subject {
		return oidc.ErrInvalidRequest().WithDescription("user no longer exists")
	}
	setClaims(ui, u, scopes)
	return nil
}

// setClaims sets the claims the scopes ask for.
func setClaims(ui *oidc.UserInfo, u *User, scopes []string) {
	ui.Subject = u.Subject
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeEmail:
			ui.Email = u.Email
			ui.EmailVerified = true
		case oidc.ScopeProfile:
			ui.Name = u.Name
			ui.PreferredUsername = u.Username
		case scopeGroups:
			g := u.Groups
			if g == nil {
				g = []string{}
			}
			ui.AppendClaims("groups", g)
		}
	}
}

// SetIntrospectionFromToken is unused: the introspection endpoint is not
// served.
func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not supported")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID would verify client JWTs (private_key_jwt, the
// JWT bearer grant); neither is supported.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("client keys are not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile grant is not supported")
}

func (s *storage) Health(context.Context) error { return nil }
