package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// backchannelLogoutEvent is the event of a logout token (OpenID
	// Connect Back-Channel Logout 1.0, section 2.4).
	backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"
	// logoutTokenTTL is a logout token's lifetime: a receiver should
	// reject older ones, and 2 minutes is what providers commonly use.
	logoutTokenTTL = 2 * time.Minute
)

// logoutClaims are the claims of a logout token. It has no nonce: the
// spec forbids one, so an ID token cannot pass for a logout token.
type logoutClaims struct {
	Issuer    string         `json:"iss"`
	Audience  string         `json:"aud"`
	IssuedAt  int64          `json:"iat"`
	Expires   int64          `json:"exp"`
	JWTID     string         `json:"jti"`
	Events    map[string]any `json:"events"`
	Subject   string         `json:"sub"`
	SessionID string         `json:"sid"`
}

// logoutToken returns a logout token for one client and session, signed
// with the current key, with header typ "logout+jwt" (section 2.4, as
// updated for explicit typing, RFC 8725 section 3.11).
func (p *Provider) logoutToken(clientID, subject, sid string) (string, error) {
	key := p.keys.current()
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       &jose.JSONWebKey{Key: key.key, KeyID: key.id},
	}, (&jose.SignerOptions{}).WithType("logout+jwt"))
	if err != nil {
		return "", fmt.Errorf("creating signer: %w", err)
	}
	now := p.now()
	payload, err := json.Marshal(logoutClaims{
		Issuer:    p.issuer,
		Audience:  clientID,
		IssuedAt:  now.Unix(),
		Expires:   now.Add(logoutTokenTTL).Unix(),
		JWTID:     randomID(16),
		Events:    map[string]any{backchannelLogoutEvent: map[string]any{}},
		Subject:   subject,
		SessionID: sid,
	})
	if err != nil {
		return "", fmt.Errorf("encoding logout token: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing logout token: %w", err)
	}
	return jws.CompactSerialize()
}

// deliverLogouts sends a logout token to every target client that has a
// BackchannelLogoutURI, in parallel, and returns the failures joined.
func (p *Provider) deliverLogouts(ctx context.Context, targets []logoutTarget) error {
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		c := p.clients[t.clientID]
		if c == nil || c.BackchannelLogoutURI == "" {
			continue
		}
		wg.Go(func() {
			if err := p.deliverLogout(ctx, c, t); err != nil {
				errs[i] = fmt.Errorf("back-channel logout to client %q: %w", c.ID, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deliverLogout POSTs one logout token (section 2.5). Any 2xx answer is
// success: the spec asks for 200, and notes that frameworks send 204.
// Redirects are not followed by the default client.
func (p *Provider) deliverLogout(ctx context.Context, c *client, t logoutTarget) error {
	tok, err := p.logoutToken(c.ID, t.subject, t.sid)
	if err != nil {
		return err
	}
	body := url.Values{"logout_token": {tok}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BackchannelLogoutURI, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	p.log.Info("idp back-channel logout delivered", "client", c.ID, "status", resp.StatusCode)
	return nil
}
