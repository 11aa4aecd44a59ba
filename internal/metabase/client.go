package metabase

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/secret"
)

// Defaults.
const (
	// DefaultTimeout bounds each call when Options.HTTPClient is nil.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxSessionAge is Metabase's MAX_SESSION_AGE default, 20160
	// minutes (contract 2.3).
	DefaultMaxSessionAge = 14 * 24 * time.Hour
	// maxBody bounds how much of a response is read.
	maxBody = 1 << 20
)

// Names Metabase uses (contract 2.1): its session cookie, device cookie,
// session header and API key header.
const (
	SessionCookie = "metabase.SESSION"
	deviceCookie  = "metabase.DEVICE"
	SessionHeader = "X-Metabase-Session"
	APIKeyHeader  = "X-Api-Key" //nolint:gosec // G101: a header name, not a credential
)

// Options configure a Client.
type Options struct {
	// BaseURL is Metabase's internal URL, such as http://metabase:3000, with
	// an optional path prefix. Required; http or https, no query, fragment or
	// user info.
	BaseURL string
	// HTTPClient sends the requests. Default: a client with DefaultTimeout.
	// The Client uses a copy that never follows redirects (the /auth/sso 302
	// carries the session) and has no cookie jar: a jar would send
	// metabase.SESSION back, and a cookie wins over X-Metabase-Session
	// (2.1), so calls could run as the wrong user.
	HTTPClient *http.Client
	// APIKey is an admin API key (a key in Administrators, 3.2), sent as
	// x-api-key. Only the admin methods and the Broker need it.
	APIKey secret.Value
	// MaxSessionAge is Metabase's MAX_SESSION_AGE, used for Session.Expires
	// when Metabase sends a browser-session cookie. Default 14 days.
	MaxSessionAge time.Duration
	// UserAgent is sent on every request. Default "gatehouse".
	UserAgent string
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Client talks to one Metabase. It is safe for concurrent use.
type Client struct {
	base   *url.URL
	hc     *http.Client
	apiKey secret.Value
	maxAge time.Duration
	ua     string
	now    func() time.Time
}

// New validates opts and returns a Client.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("metabase: base url %q: want http(s)://host[:port][/prefix] without query, fragment or user info", opts.BaseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	hc := &http.Client{Timeout: DefaultTimeout}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		hc = &c
	}
	hc.Jar = nil
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if opts.MaxSessionAge < 0 {
		return nil, fmt.Errorf("metabase: max session age %v is negative", opts.MaxSessionAge)
	}
	if opts.MaxSessionAge == 0 {
		opts.MaxSessionAge = DefaultMaxSessionAge
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "gatehouse"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Client{base: u, hc: hc, apiKey: opts.APIKey, maxAge: opts.MaxSessionAge, ua: opts.UserAgent, now: opts.Now}, nil
}

// RequestInfo describes the browser a back-channel call acts for.
type RequestInfo struct {
	// ClientIP is sent as X-Forwarded-For, so that Metabase's per-IP login
	// throttle (50 failures an hour, 2.4) and login history see the user,
	// not gatehouse: without it every user shares gatehouse's address and
	// 50 failures lock everyone out (6.2). The zero Addr sends none.
	ClientIP netip.Addr
	// DeviceID is the browser's metabase.DEVICE cookie (a UUID), sent so
	// that Metabase does not see a new device, and mail "login from a new
	// device", on every back-channel login (6.6).
	DeviceID string
}

type requestInfoKey struct{}

// WithRequestInfo returns a context whose calls carry info.
func WithRequestInfo(ctx context.Context, info RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, info)
}

// auth selects the credential a request carries.
type auth int

const (
	authNone auth = iota
	authAPIKey
	authSession
)

// call is one request.
type call struct {
	method, path string
	query        url.Values
	body         any
	auth         auth
	session      string
	// secrets are the call's secret values, kept out of error text.
	secrets []string
}

// response is a read response.
type response struct {
	status  int
	header  http.Header
	cookies []*http.Cookie
	body    []byte
}

func (c *Client) op(cl call) string { return cl.method + " " + cl.path }

// do sends cl and reads the response. It returns an *Error with
// ErrTransport when no response arrived; statuses are the caller's to
// judge.
func (c *Client) do(ctx context.Context, cl call) (*response, error) {
	secrets := c.secrets(cl)
	key := ""
	if cl.auth == authAPIKey {
		if c.apiKey.IsZero() {
			return nil, &Error{Op: c.op(cl), Kind: ErrUnauthenticated, Detail: "no admin api key configured"}
		}
		key = string(c.apiKey.Reveal())
	}
	u := *c.base
	u.Path += cl.path
	u.RawQuery = cl.query.Encode()
	var body io.Reader
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return nil, &Error{Op: c.op(cl), Kind: ErrTransport, Detail: "encoding request body"}
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), body)
	if err != nil {
		return nil, &Error{Op: c.op(cl), Kind: ErrTransport, Detail: "building request"}
	}
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch cl.auth {
	case authAPIKey:
		req.Header.Set(APIKeyHeader, key)
	case authSession:
		req.Header.Set(SessionHeader, cl.session)
	}
	if info, ok := ctx.Value(requestInfoKey{}).(RequestInfo); ok {
		if info.ClientIP.IsValid() {
			// One value, overwriting anything: Metabase takes the first (2.2).
			req.Header.Set("X-Forwarded-For", info.ClientIP.Unmap().String())
		}
		if info.DeviceID != "" {
			if !uuidRE.MatchString(info.DeviceID) {
				return nil, &Error{Op: c.op(cl), Kind: ErrTransport, Detail: "request info: device id is not a uuid"}
			}
			// A request cookie: Secure, HttpOnly and SameSite are response attributes.
			req.AddCookie(&http.Cookie{Name: deviceCookie, Value: info.DeviceID}) //nolint:gosec // G124: see above
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error prints the whole URL, and /auth/sso carries the JWT in
		// its query: keep only the cause, and redact that too.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &Error{Op: c.op(cl), Kind: ErrTransport, Err: newRedactedError(err, secrets)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, &Error{Op: c.op(cl), Status: resp.StatusCode, Kind: ErrTransport, Err: newRedactedError(err, secrets)}
	}
	return &response{status: resp.StatusCode, header: resp.Header, cookies: resp.Cookies(), body: b}, nil
}

// secrets lists every secret a call carries: its own (a password, a JWT),
// its session key, and the API key.
func (c *Client) secrets(cl call) []string {
	out := append([]string(nil), cl.secrets...)
	switch cl.auth {
	case authAPIKey:
		out = append(out, string(c.apiKey.Reveal()))
	case authSession:
		out = append(out, cl.session)
	}
	return out
}

// redactedError is an error whose text has secrets removed; errors.Is and
// errors.As still reach the cause (context.Canceled, net.Error). It keeps
// the redacted text, not the secrets, so that %#v cannot print them.
type redactedError struct {
	msg string
	err error
}

func newRedactedError(err error, secrets []string) *redactedError {
	return &redactedError{msg: redact(err.Error(), secrets), err: err}
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// fail builds the *Error for a response the caller did not expect, mapping
// the status classes every endpoint shares.
func (c *Client) fail(cl call, r *response) *Error {
	e := &Error{Op: c.op(cl), Status: r.status, Detail: detail(r.body, r.header.Get("Content-Type"), c.secrets(cl))}
	switch r.status {
	case http.StatusUnauthorized:
		e.Kind = ErrUnauthenticated
	case http.StatusForbidden:
		e.Kind = ErrForbidden
	case http.StatusNotFound:
		e.Kind = ErrNotFound
	case http.StatusBadRequest:
		e.Kind = ErrBadRequest
	case http.StatusServiceUnavailable:
		e.Kind = ErrUnavailable
	default:
		e.Kind = ErrUnexpected
	}
	return e
}

// decode unmarshals a JSON response into v.
func (c *Client) decode(cl call, r *response, v any) error {
	if err := json.Unmarshal(r.body, v); err != nil {
		return &Error{Op: c.op(cl), Status: r.status, Kind: ErrUnexpected, Detail: "response is not the expected json"}
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
