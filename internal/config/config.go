// Package config defines gatehouse's configuration file: its schema (the
// field comments below are the reference; docs/config.md is generated from
// them and kept in sync by a test), its defaults, loading with positioned
// errors, and pure validation that reports every problem at once.
package config

import (
	"slices"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	// Listeners are the addresses gatehouse serves user traffic on. At least
	// one is required.
	Listeners []Listener `yaml:"listeners"`

	// TrustedProxies are the CIDRs of proxies (HAProxy, a load balancer)
	// whose X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and
	// X-Request-Id gatehouse believes, and that may send a PROXY protocol
	// header. From any other peer those headers are replaced. Default: none.
	TrustedProxies []Prefix `yaml:"trusted_proxies"`

	// Server holds the HTTP server limits shared by all listeners.
	Server Server `yaml:"server"`

	// HSTS configures the Strict-Transport-Security header sent on
	// responses over TLS.
	HSTS HSTS `yaml:"hsts"`

	// Headers names the headers gatehouse sets on upstream requests. Inbound
	// headers with these names (in any case, with _ for -) are always
	// removed before routing.
	Headers Headers `yaml:"headers"`

	// Admin is the operator listener for metrics and status. It is never
	// served on a public listener.
	Admin Admin `yaml:"admin"`

	// Audit configures the access audit log: one JSON record per request.
	Audit Audit `yaml:"audit"`

	// Log configures the operator log (stderr).
	Log Log `yaml:"log"`

	// PublicURL is gatehouse's external base URL, such as
	// https://apps.example.com: the origin users sign in on (the callback
	// is PublicURL + /.gatehouse/callback, to register at each provider),
	// the issuer of the signed identity assertion, and the base of the
	// built-in provider's issuer (PublicURL + /.gatehouse/idp). Required
	// when identity is configured.
	PublicURL URL `yaml:"public_url"`

	// Identity configures who may sign in and how: sessions, OpenID
	// providers, the built-in provider, bearer tokens and the assertion
	// gatehouse signs for upstreams.
	Identity Identity `yaml:"identity"`

	// Upstreams are the applications gatehouse forwards to, by name.
	Upstreams map[string]*Upstream `yaml:"upstreams"`

	// Routes map requests to upstreams. The most specific route wins: an
	// exact host before a wildcard host before any host, then the longest
	// path prefix. A request no route matches gets 404.
	Routes []Route `yaml:"routes"`

	// SPOE runs gatehouse as HAProxy's SPOE agent (topology B in
	// docs/haproxy.md): HAProxy asks for a verdict on each request over
	// SPOP, sets the identity headers from it and routes to the app
	// itself. The verdict is the proxy's: same routes, same policy, same
	// audit record (with via spoe).
	SPOE SPOE `yaml:"spoe"`

	// ForwardAuth serves the forward-auth endpoint /.gatehouse/auth to
	// trusted_proxies, for nginx auth_request, Traefik forwardAuth, Caddy
	// forward_auth and HAProxy's Lua auth-request (docs/haproxy.md).
	// Callers outside trusted_proxies get 403. Default: false.
	ForwardAuth bool `yaml:"forward_auth"`
}

// SPOE configures the SPOE agent.
type SPOE struct {
	// Address is where the agent listens for HAProxy's SPOP connections,
	// such as 127.0.0.1:12345. Only trusted_proxies may connect. Empty
	// means no agent. Changing it needs a restart. Default: empty.
	Address string `yaml:"address"`

	// Timeout bounds one verdict. Keep it below the agent's timeout
	// processing in HAProxy's SPOE file: a later answer is dropped, and
	// HAProxy refuses the request. Between 10ms and 10s. Default: 400ms.
	Timeout Duration `yaml:"timeout"`

	// MaxFrameSize is the largest SPOP frame accepted and announced; the
	// handshake lowers it to HAProxy's (tune.bufsize - 4, 16380 by
	// default). Between 256 and 1048576. Default: 16380.
	MaxFrameSize int `yaml:"max_frame_size"`

	// MaxInFlight bounds the verdicts decided at once; beyond it the
	// agent stops reading until one finishes. Default: 1024.
	MaxInFlight int `yaml:"max_in_flight"`
}

// Listener is one address gatehouse accepts connections on.
type Listener struct {
	// Name identifies the listener in logs and metrics. Default: the address.
	Name string `yaml:"name"`

	// Address is the host:port to listen on, such as 127.0.0.1:8080 or
	// :8443. Required.
	Address string `yaml:"address"`

	// TLS, when set, terminates TLS on this listener (TLS 1.2 or newer,
	// HTTP/2 offered through ALPN).
	TLS *TLS `yaml:"tls"`

	// ProxyProtocol accepts a PROXY protocol v1 or v2 header (as sent by
	// HAProxy's send-proxy-v2) from trusted_proxies: "off"; "optional" (a
	// trusted peer may send one; a header from any other peer closes the
	// connection); "required" (every connection must come from a trusted
	// peer and start with a header). HAProxy's LOCAL health checks are
	// accepted and use the peer's own address. Default: off.
	ProxyProtocol string `yaml:"proxy_protocol"`

	// RedirectHTTPS makes this a plain-HTTP listener that only answers 308
	// redirects to the same host and path over https (to https_port).
	// Default: false.
	RedirectHTTPS bool `yaml:"redirect_https"`

	// HTTPSPort is the port redirects point to; 443 is left out of the URL.
	// Default: 443.
	HTTPSPort int `yaml:"https_port"`
}

func (l *Listener) setDefaults() {
	l.ProxyProtocol = "off"
	l.HTTPSPort = 443
}

// TLS is a certificate and key for a TLS listener.
type TLS struct {
	// CertFile is the PEM certificate chain, leaf first. Required.
	CertFile string `yaml:"cert_file"`

	// KeyFile is the PEM private key for CertFile. Required.
	KeyFile string `yaml:"key_file"`

	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3".
	// Default: 1.2.
	MinVersion string `yaml:"min_version"`

	// ReloadInterval is how often the files are checked for changes; a
	// changed pair is loaded without a restart (and on SIGHUP). A pair that
	// fails to load is logged and the previous one kept. Default: 10s.
	ReloadInterval Duration `yaml:"reload_interval"`
}

func (t *TLS) setDefaults() {
	t.MinVersion = "1.2"
	t.ReloadInterval = Duration(10 * time.Second)
}

// Server holds the limits every listener applies, so that a slow or
// malicious client cannot hold a connection forever.
type Server struct {
	// ReadHeaderTimeout bounds reading a request's headers (slowloris).
	// Default: 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`

	// BodyReadTimeout bounds reading a request body, measured from the end
	// of the headers; it is cleared once the body is read, so it never cuts
	// a long response. Default: 5m.
	BodyReadTimeout Duration `yaml:"body_read_timeout"`

	// WriteTimeout bounds writing a whole response. 0 means no limit, which
	// long streamed responses (Metabase queries, server-sent events) need;
	// upstream timeouts still apply. Default: 0s.
	WriteTimeout Duration `yaml:"write_timeout"`

	// IdleTimeout closes keep-alive connections idle this long.
	// Default: 2m.
	IdleTimeout Duration `yaml:"idle_timeout"`

	// ProxyHeaderTimeout bounds reading a PROXY protocol header.
	// Default: 5s.
	ProxyHeaderTimeout Duration `yaml:"proxy_header_timeout"`

	// MaxHeaderBytes caps the request line and headers; larger requests get
	// 431. Default: 32768.
	MaxHeaderBytes int `yaml:"max_header_bytes"`

	// MaxConcurrentStreams caps HTTP/2 streams per connection.
	// Default: 250.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`

	// ShutdownTimeout is how long SIGTERM waits for in-flight requests
	// before closing connections. Default: 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// HSTS is the Strict-Transport-Security policy.
type HSTS struct {
	// MaxAge is the max-age sent; 0s turns the header off. Default: 8760h
	// (one year).
	MaxAge Duration `yaml:"max_age"`

	// IncludeSubdomains adds includeSubDomains. Default: false.
	IncludeSubdomains bool `yaml:"include_subdomains"`

	// Preload adds preload (needs include_subdomains and a max_age of at
	// least one year). Default: false.
	Preload bool `yaml:"preload"`
}

// Headers names the headers gatehouse sets upstream.
type Headers struct {
	// RequestID carries the request ID upstream and back to the client. An
	// inbound value is kept only from trusted_proxies. Default: X-Request-Id.
	RequestID string `yaml:"request_id"`

	// User carries the signed-in user's name. Default: X-Gatehouse-User.
	User string `yaml:"user"`

	// Email carries the signed-in user's email. Default: X-Gatehouse-Email.
	Email string `yaml:"email"`

	// Groups carries the user's groups, comma-separated.
	// Default: X-Gatehouse-Groups.
	Groups string `yaml:"groups"`

	// Assertion carries the signed identity assertion (a JWT).
	// Default: X-Gatehouse-Assertion.
	Assertion string `yaml:"assertion"`
}

// Admin is the operator listener: /metrics (Prometheus),
// /.gatehouse/healthz and /.gatehouse/readyz.
type Admin struct {
	// Address is the host:port of the admin listener; "off" disables it.
	// A non-loopback address requires token. Default: 127.0.0.1:9090.
	Address string `yaml:"address"`

	// Token, when set, is a secret reference to a bearer token required on
	// every admin path except the health checks (Prometheus sends it with
	// authorization.credentials_file). Default: none.
	Token SecretRef `yaml:"token"`

	// Pprof serves Go's profiler at /debug/pprof/ on the admin listener,
	// for diagnosing CPU and memory use. Default: false.
	Pprof bool `yaml:"pprof"`
}

// Audit configures the audit log; docs/audit.md describes its records.
type Audit struct {
	// Output is "stdout", "stderr" or an absolute file path. A file is
	// reopened on SIGHUP and when it is moved away (log rotation).
	// Default: stdout.
	Output string `yaml:"output"`
}

// Log configures the operator log, written to stderr.
type Log struct {
	// Level is debug, info, warn or error. Default: info.
	Level string `yaml:"level"`

	// Format is json or text. Default: json.
	Format string `yaml:"format"`
}

// Upstream is an application: one or more equivalent targets.
type Upstream struct {
	// Targets are the base URLs of the application's instances
	// (http or https, host and port, no path), spread by balance. A target
	// may also be a mapping {url: http://10.0.1.12:3000, weight: 2}: its
	// share of the traffic relative to the others' (1 to 1000, default 1),
	// for every policy. Required.
	Targets []Target `yaml:"targets"`

	// DialTimeout bounds connecting to a target; a failure answers 502.
	// Default: 5s.
	DialTimeout Duration `yaml:"dial_timeout"`

	// ResponseHeaderTimeout bounds the wait for the response headers after
	// the request is sent; a timeout answers 504. Default: 60s, or 21m for
	// an upstream that a route with metabase uses.
	ResponseHeaderTimeout Duration `yaml:"response_header_timeout"`

	// IdleConnTimeout closes pooled upstream connections idle this long.
	// Default: 90s.
	IdleConnTimeout Duration `yaml:"idle_conn_timeout"`

	// MaxIdleConnsPerTarget is the keep-alive pool size per target; size it
	// for peak concurrency so load does not churn connections.
	// Default: 512.
	MaxIdleConnsPerTarget int `yaml:"max_idle_conns_per_target"`

	// Balance chooses a target per request: round_robin, least_conn (the
	// fewest requests in flight: the right choice for Metabase, whose
	// queries vary from milliseconds to many minutes), random_two (the
	// less busy of two random targets) or hash (consistent hashing on
	// hash_on, for stickiness). Default: round_robin.
	Balance string `yaml:"balance"`

	// HashOn is the key for balance: hash: cookie:NAME, header:NAME or
	// client_ip (the address from the trusted front end). Requests
	// without the key are balanced by least_conn.
	HashOn string `yaml:"hash_on"`

	// SlowStart ramps a target that just came up (or back from an
	// ejection) from 10% to its full share of traffic over this long.
	// Default: 0s (off).
	SlowStart Duration `yaml:"slow_start"`

	// HealthCheck, when set, checks every target actively; a target
	// that fails fall checks in a row gets no traffic until it passes
	// rise in a row.
	HealthCheck *HealthCheck `yaml:"health_check"`

	// EjectAfter ejects a target after this many consecutive failed
	// requests (connection errors, timeouts, 5xx) for eject_for, doubling
	// up to 10 times that while it keeps failing. Default: 0 (off).
	EjectAfter int `yaml:"eject_after"`

	// EjectFor is how long the first ejection lasts. Default: 10s.
	EjectFor Duration `yaml:"eject_for"`

	// MaxConnsPerTarget caps the requests in flight to one target; more
	// wait in a queue of max_queue per target and beyond that get 503
	// with Retry-After. Default: 0 (no cap).
	MaxConnsPerTarget int `yaml:"max_conns_per_target"`

	// MaxQueue is the wait queue per target when max_conns_per_target is
	// reached. Default: 0 (refuse at once).
	MaxQueue int `yaml:"max_queue"`

	// TLS configures the connection to https targets.
	TLS *UpstreamTLS `yaml:"tls"`

	// Retries is how many other targets a failed request is tried on: a
	// connection failure for any method (nothing was sent); a timeout or
	// broken connection before any response byte only for GET, HEAD and
	// OPTIONS without a body. A retry budget (a fifth of the recent
	// requests) keeps an outage from multiplying the load. Default: 2.
	Retries int `yaml:"retries"`
}

// RouteTimeouts limit how long a route waits on its upstream. Connecting
// is limited by the upstream's dial_timeout (TLS handshake included).
type RouteTimeouts struct {
	// ResponseHeader bounds the wait for the response headers after the
	// request is sent (504), on top of the upstream's
	// response_header_timeout. For Metabase, which answers a query only
	// when it is done, outlast its query timeout: 21m. Default: 0s (the
	// upstream's alone).
	ResponseHeader Duration `yaml:"response_header"`

	// Idle cuts a response whose body sends nothing for this long (a
	// stalled stream). Default: 0s (no limit).
	Idle Duration `yaml:"idle"`

	// Total bounds the whole exchange, streamed body included; a route
	// for downloads or server-sent events should leave it at 0.
	// Default: 0s (no limit).
	Total Duration `yaml:"total"`
}

// UpstreamTLS configures TLS to https targets (TLS 1.2 or newer).
type UpstreamTLS struct {
	// CAFile is a PEM file of the CA certificates that sign the targets'
	// certificates, used instead of the system roots. Default: the
	// system roots.
	CAFile string `yaml:"ca_file"`

	// ServerName is the name sent in SNI and verified in the targets'
	// certificates, instead of the host of each target URL (for targets
	// addressed by IP). Default: the target's host.
	ServerName string `yaml:"server_name"`

	// ClientCertFile is a PEM certificate chain gatehouse presents to the
	// targets (mutual TLS). Requires client_key.
	ClientCertFile string `yaml:"client_cert_file"`

	// ClientKey is a reference to the PEM private key of
	// client_cert_file.
	ClientKey SecretRef `yaml:"client_key"`
}

// HealthCheck is an active HTTP health check of every target.
type HealthCheck struct {
	// Method is the check's HTTP method. Default: GET.
	Method string `yaml:"method"`

	// Path is the path checked, such as /api/health for Metabase (which
	// answers 503 while it starts). Required.
	Path string `yaml:"path"`

	// Status is the status a healthy target answers. Default: 200.
	Status int `yaml:"status"`

	// Interval is the time between checks. Default: 10s.
	Interval Duration `yaml:"interval"`

	// Timeout bounds one check. Default: 2s.
	Timeout Duration `yaml:"timeout"`

	// Rise is how many passing checks in a row bring a target up.
	// Default: 2.
	Rise int `yaml:"rise"`

	// Fall is how many failing checks in a row take a target down.
	// Default: 3.
	Fall int `yaml:"fall"`
}

func (h *HealthCheck) setDefaults() {
	h.Method = "GET"
	h.Status = 200
	h.Interval = Duration(10 * time.Second)
	h.Timeout = Duration(2 * time.Second)
	h.Rise = 2
	h.Fall = 3
}

func (u *Upstream) setDefaults() {
	u.DialTimeout = Duration(5 * time.Second)
	u.ResponseHeaderTimeout = Duration(60 * time.Second)
	u.IdleConnTimeout = Duration(90 * time.Second)
	u.MaxIdleConnsPerTarget = 512
	u.Balance = "round_robin"
	u.Retries = 2
	u.EjectFor = Duration(10 * time.Second)
}

// Route sends matching requests to an upstream.
type Route struct {
	// Name identifies the route in audit records and metrics.
	// Default: host and path, such as "app.example.com/api".
	Name string `yaml:"name"`

	// Host matches the request host: exact ("app.example.com"), a wildcard
	// for one or more labels ("*.example.com"), or empty for any host.
	// Default: any host.
	Host string `yaml:"host"`

	// Path is a path prefix matched on segment boundaries ("/api" matches
	// /api and /api/x, not /apix), against the canonical path.
	// Default: /.
	Path string `yaml:"path"`

	// Upstream names the upstream in upstreams. A route without one only
	// answers verdicts (spoe, forward_auth), for front ends that route
	// themselves; the proxy answers requests on it with 404. Required
	// unless spoe.address or forward_auth is set.
	Upstream string `yaml:"upstream"`

	// PreserveHost sends the client's Host header upstream instead of the
	// target's host. Default: false.
	PreserveHost bool `yaml:"preserve_host"`

	// Policy decides who may use the route. Required: gatehouse denies
	// unless a rule allows, so a route without a policy would serve no
	// one. Use `public: ["/"]` for a route open to everyone.
	Policy *Policy `yaml:"policy"`

	// Providers names the identity providers (identity.providers, or
	// "builtin") that may sign users in for this route; with several, the
	// user chooses on a sign-in page. Default: all of them.
	Providers []string `yaml:"providers"`

	// API marks a route used by programs, not browsers: a request without
	// credentials gets 401 with WWW-Authenticate instead of a redirect to
	// sign in. Requests that ask for JSON, fetch() calls and non-GET
	// requests get 401 on any route. Default: false.
	API bool `yaml:"api"`

	// IdentityHeaders are extra headers sent upstream with values taken
	// from the user's claims: header name → claim name (a dotted path
	// such as "realm_access.roles"; lists are joined with commas). A
	// missing claim sends no header. Claims of session users must be
	// listed in identity.session.keep_claims. Default: none.
	IdentityHeaders map[string]string `yaml:"identity_headers"`

	// PassAuthorization forwards the client's Authorization header. By
	// default it is removed, so that a bearer token meant for gatehouse
	// never reaches the app. Default: false.
	PassAuthorization bool `yaml:"pass_authorization"`

	// Timeouts limit the upstream's answer on this route.
	Timeouts RouteTimeouts `yaml:"timeouts"`

	// WebSocket allows WebSocket upgrades on this route, after the policy
	// allows the request (before the 101). gatehouse closes the connection
	// when the user's session ends: its absolute lifetime, logout or
	// back-channel logout (checked every 500ms). Other upgrades (h2c, ...)
	// are always refused with 400. Default: false.
	WebSocket bool `yaml:"websocket"`

	// PassAccessToken sends the provider's access token upstream as
	// `Authorization: Bearer <token>`, for apps that call APIs on the
	// user's behalf; for a bearer-token client, its own verified token.
	// Sessions then keep the access token (a larger cookie, refreshed
	// with the session). Default: false: the upstream never receives the
	// provider's tokens.
	PassAccessToken bool `yaml:"pass_access_token"`

	// Metabase marks the route's upstream as Metabase and applies what it
	// needs (docs/metabase.md): Metabase's public paths open without
	// sign-in, a response header timeout that outlasts its 20-minute
	// queries, and its API credentials (x-api-key, X-Metabase-Session)
	// removed unless allow_api_clients says otherwise. Default: not
	// Metabase.
	Metabase *Metabase `yaml:"metabase"`
}

// Metabase is what a Metabase route needs.
type Metabase struct {
	// Mode is how users sign in to Metabase: "" (they sign in to Metabase
	// themselves, after gatehouse lets them through); "jwt" (gatehouse
	// signs them in with Metabase's JWT SSO, Pro and Enterprise
	// editions); "broker" (the free edition: gatehouse keeps each user's
	// Metabase account, with a password only it can derive, through
	// Metabase's admin API). With jwt and broker the Metabase session is
	// bound to the gatehouse session: see docs/metabase.md. Default: "".
	Mode string `yaml:"mode"`

	// APIKey is a Metabase API key in the Administrators group, by
	// reference, for mode broker. Required with mode broker.
	APIKey SecretRef `yaml:"api_key"`

	// BrokerKey is the key brokered passwords are derived from (at least
	// 32 bytes), by reference. Changing it changes every password; each
	// is reset at the user's next sign-in. Required with mode broker.
	BrokerKey SecretRef `yaml:"broker_key"`

	// AllowUnverifiedEmail signs users in to Metabase whose provider does
	// not say their email is verified (email_verified). Metabase finds
	// accounts by email, so an unverified email could take over someone
	// else's account. Default: false.
	AllowUnverifiedEmail bool `yaml:"allow_unverified_email"`

	// JWTSecret is Metabase's jwt-shared-secret (Admin > Authentication >
	// JWT), by reference; used as its raw bytes, as Metabase does.
	// Required with mode jwt.
	JWTSecret SecretRef `yaml:"jwt_secret"`

	// Groups maps identity provider groups to Metabase group names. In
	// mode jwt only mapped groups are sent; without it the provider's
	// groups are sent as they are (for Metabase's jwt-group-mappings). In
	// mode broker the Metabase groups named here are the ones gatehouse
	// manages (All Users is always kept; Administrators only if named).
	// Metabase applies groups only at sign-in; a group change at the
	// provider opens a new Metabase session at the next refresh.
	// Default: none.
	Groups map[string]string `yaml:"groups"`

	// PublicPaths are added to the route's policy.public: Metabase's
	// public links and embeds, its frontend assets, its health check and
	// the login page's settings. Set [] to open none.
	// Default: [/public/, /api/public/, /embed/, /api/embed/, /app/,
	// /favicon.ico, /api/health, /api/session/properties].
	PublicPaths []string `yaml:"public_paths"`

	// AllowAPIClients lets requests that carry Metabase's own credentials
	// (an x-api-key or X-Metabase-Session header: scripts, dbt) through to
	// Metabase's authentication without signing in to gatehouse; the
	// route's policy does not apply to them and the app gets no identity
	// headers. Otherwise those headers are removed, so no one reaches
	// Metabase with a credential gatehouse did not check. Default: false.
	AllowAPIClients bool `yaml:"allow_api_clients"`
}

// MetabasePublicPaths are Metabase's paths that need no sign-in.
var MetabasePublicPaths = []string{"/public/", "/api/public/", "/embed/", "/api/embed/", "/app/",
	"/favicon.ico", "/api/health", "/api/session/properties"}

// MetabaseResponseHeaderTimeout is the response header timeout of an
// upstream that a metabase route uses, unless set: above Metabase's
// default 20-minute query timeout (MB_DB_QUERY_TIMEOUT_MINUTES).
const MetabaseResponseHeaderTimeout = 21 * time.Minute

func (m *Metabase) setDefaults() {
	m.PublicPaths = slices.Clone(MetabasePublicPaths)
}

func (r *Route) setDefaults() {
	r.Path = "/"
}

// Default returns the configuration with every default applied and no
// listeners, upstreams or routes.
func Default() *Config {
	c := &Config{
		Server: Server{
			ReadHeaderTimeout:    Duration(10 * time.Second),
			BodyReadTimeout:      Duration(5 * time.Minute),
			IdleTimeout:          Duration(2 * time.Minute),
			ProxyHeaderTimeout:   Duration(5 * time.Second),
			MaxHeaderBytes:       32 << 10,
			MaxConcurrentStreams: 250,
			ShutdownTimeout:      Duration(30 * time.Second),
		},
		HSTS: HSTS{MaxAge: Duration(365 * 24 * time.Hour)},
		Headers: Headers{
			RequestID: "X-Request-Id",
			User:      "X-Gatehouse-User",
			Email:     "X-Gatehouse-Email",
			Groups:    "X-Gatehouse-Groups",
			Assertion: "X-Gatehouse-Assertion",
		},
		Admin: Admin{Address: "127.0.0.1:9090"},
		SPOE:  SPOE{Timeout: Duration(400 * time.Millisecond), MaxFrameSize: 16380, MaxInFlight: 1024},
		Audit: Audit{Output: "stdout"},
		Log:   Log{Level: "info", Format: "json"},
		Identity: Identity{
			Assertion: Assertion{TTL: Duration(5 * time.Minute)},
		},
	}
	c.Identity.Session.setDefaults()
	return c
}
