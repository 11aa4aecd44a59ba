package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/canon"
)

// validator checks a decoded Config. It is pure: it reads no files and
// opens no sockets, so `gatehouse check` has no side effects.
type validator struct {
	d            *decoder
	decodeFailed map[string]bool // paths with decode errors
}

// errorf records a problem at the position where path was written, or at
// the nearest enclosing field that was.
func (v *validator) errorf(path, format string, args ...any) {
	if v.decodeFailed[path] {
		return // the decoder already said what is wrong here
	}
	p := v.lookup(path)
	v.d.errs = append(v.d.errs, &Error{File: v.d.file, Line: p.line, Col: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// keyErrorf is errorf positioned at a map key instead of its value.
func (v *validator) keyErrorf(path, format string, args ...any) {
	if p, ok := v.d.keyPos[path]; ok {
		v.d.errs = append(v.d.errs, &Error{File: v.d.file, Line: p.line, Col: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
		return
	}
	v.errorf(path, format, args...)
}

func (v *validator) lookup(path string) pos {
	if at, ok := v.d.where[path]; ok {
		return at
	}
	// A field that was not written is reported at the key of the nearest
	// enclosing field that was, or at the start of the list element.
	for p := path; ; {
		if at, ok := v.d.keyPos[p]; ok {
			return at
		}
		if at, ok := v.d.where[p]; ok {
			return at
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			if at, ok := v.d.where[""]; ok {
				return at
			}
			return pos{1, 1}
		}
		p = p[:i]
	}
}

func (v *validator) validate(c *Config) {
	v.decodeFailed = map[string]bool{}
	for _, e := range v.d.errs {
		v.decodeFailed[e.Path] = true
	}
	v.listeners(c)
	v.server(c)
	v.hsts(c)
	v.headers(c)
	v.admin(c)
	v.audit(c)
	v.log(c)
	v.upstreams(c)
	v.metabaseRoutes(c)
	v.routes(c)
	v.identity(c)
	v.verdicts(c)
}

// metabaseRoutes applies what a metabase route implies, before the routes'
// policies are compiled: its public paths join policy.public, and its
// upstream's response header timeout, unless written, becomes
// MetabaseResponseHeaderTimeout.
func (v *validator) metabaseRoutes(c *Config) {
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Metabase == nil {
			continue
		}
		p := fmt.Sprintf("routes[%d].metabase", i)
		for j, pp := range r.Metabase.PublicPaths {
			if !strings.HasPrefix(pp, "/") {
				v.errorf(fmt.Sprintf("%s.public_paths[%d]", p, j), "a path pattern starts with /")
			}
		}
		switch r.Metabase.Mode {
		case "":
		case "jwt":
			if r.Metabase.JWTSecret.IsZero() {
				v.errorf(p+".jwt_secret", "required with mode jwt: Metabase's jwt-shared-secret, by reference")
			}
			if r.Upstream == "" {
				v.errorf(p+".mode", "mode jwt signs users in through the route's upstream: the route needs one")
			}
		case "broker":
			if r.Metabase.APIKey.IsZero() {
				v.errorf(p+".api_key", "required with mode broker: a Metabase API key in Administrators, by reference")
			}
			if r.Metabase.BrokerKey.IsZero() {
				v.errorf(p+".broker_key", "required with mode broker: at least 32 random bytes, by reference")
			}
			if r.Upstream == "" {
				v.errorf(p+".mode", "mode broker signs users in through the route's upstream: the route needs one")
			}
		default:
			v.errorf(p+".mode", `unknown mode %q (want jwt, broker, or unset)`, r.Metabase.Mode)
		}
		for _, k := range sortedKeys(r.Metabase.Groups) {
			if r.Metabase.Groups[k] == "" {
				v.errorf(p+".groups."+k, "a Metabase group name is required")
			}
		}
		if r.Policy != nil && r.Metabase.Mode == "broker" {
			// Brokered accounts are used through gatehouse only: their
			// passwords are gatehouse's, and a reset would take one over.
			r.Policy.Deny = append(slices.Clone(r.Policy.Deny),
				Rule{Name: "metabase-password-login", Methods: []string{"POST"}, Paths: []string{"/api/session"}},
				Rule{Name: "metabase-password-reset", Paths: []string{"/api/session/forgot_password", "/api/session/reset_password",
					"/auth/forgot_password", "/auth/reset_password"}})
		}
		if r.Policy != nil {
			public := slices.Clone(r.Policy.Public)
			for _, pp := range r.Metabase.PublicPaths {
				if strings.HasPrefix(pp, "/") { // the others are reported above
					public = append(public, pp)
				}
			}
			r.Policy.Public = public
		}
		if u := c.Upstreams[r.Upstream]; u != nil {
			if _, written := v.d.where["upstreams."+r.Upstream+".response_header_timeout"]; !written {
				u.ResponseHeaderTimeout = Duration(MetabaseResponseHeaderTimeout)
			}
		}
	}
}

// verdicts checks the SPOE agent and forward-auth settings.
func (v *validator) verdicts(c *Config) {
	s := c.SPOE
	if s.Address != "" {
		if err := checkHostPort(s.Address); err != nil {
			v.errorf("spoe.address", "%v", err)
		}
		for i, l := range c.Listeners {
			if l.Address == s.Address {
				v.errorf("spoe.address", "address %s is already used by listeners[%d]", s.Address, i)
			}
		}
	}
	if d := s.Timeout.D(); d < 10*time.Millisecond || d > 10*time.Second {
		v.errorf("spoe.timeout", "must be between 10ms and 10s")
	}
	if s.MaxFrameSize < 256 || s.MaxFrameSize > 1<<20 {
		v.errorf("spoe.max_frame_size", "must be between 256 and 1048576")
	}
	if s.MaxInFlight < 1 {
		v.errorf("spoe.max_in_flight", "must be at least 1")
	}
	if len(c.TrustedProxies) == 0 {
		if s.Address != "" {
			v.errorf("spoe.address", "the agent accepts only trusted_proxies, and none are configured")
		}
		if c.ForwardAuth {
			v.errorf("forward_auth", "forward-auth answers only trusted_proxies, and none are configured")
		}
	}
}

func (v *validator) listeners(c *Config) {
	if len(c.Listeners) == 0 {
		v.errorf("listeners", "at least one listener is required")
	}
	seen := map[string]string{}
	names := map[string]string{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := fmt.Sprintf("listeners[%d]", i)
		if l.Address == "" {
			v.errorf(p+".address", "required")
		} else if err := checkHostPort(l.Address); err != nil {
			v.errorf(p+".address", "%v", err)
		} else if prev, dup := seen[l.Address]; dup && !strings.HasSuffix(l.Address, ":0") {
			v.errorf(p+".address", "address %s is already used by %s", l.Address, prev)
		} else {
			seen[l.Address] = p
		}
		if l.Name == "" {
			l.Name = l.Address // a clash is reported as a duplicate address
		} else if prev, dup := names[l.Name]; dup {
			v.errorf(p+".name", "name %q is already used by %s", l.Name, prev)
		}
		names[l.Name] = p
		switch l.ProxyProtocol {
		case "off":
		case "optional", "required":
			if len(c.TrustedProxies) == 0 {
				v.errorf(p+".proxy_protocol", "proxy_protocol %s needs trusted_proxies: PROXY headers are accepted only from them", l.ProxyProtocol)
			}
		default:
			v.errorf(p+".proxy_protocol", "unknown value %q (want off, optional or required)", l.ProxyProtocol)
		}
		if l.HTTPSPort < 1 || l.HTTPSPort > 65535 {
			v.errorf(p+".https_port", "port %d out of range 1-65535", l.HTTPSPort)
		}
		if l.RedirectHTTPS && l.TLS != nil {
			v.errorf(p+".redirect_https", "a TLS listener cannot be an HTTP→HTTPS redirect listener")
		}
		if t := l.TLS; t != nil {
			tp := p + ".tls"
			if t.CertFile == "" {
				v.errorf(tp+".cert_file", "required")
			}
			if t.KeyFile == "" {
				v.errorf(tp+".key_file", "required")
			}
			if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
				v.errorf(tp+".min_version", "unsupported TLS version %q (want 1.2 or 1.3)", t.MinVersion)
			}
			if t.ReloadInterval.D() < 100*time.Millisecond {
				v.errorf(tp+".reload_interval", "must be at least 100ms")
			}
		}
	}
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid address %q (want host:port, such as 127.0.0.1:8080 or :8443)", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port %q", port)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil && !hostnameRE.MatchString(host) {
			return fmt.Errorf("invalid host %q", host)
		}
	}
	return nil
}

var hostnameRE = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

func (v *validator) server(c *Config) {
	s := &c.Server
	positive := func(name string, d Duration) {
		if d <= 0 {
			v.errorf("server."+name, "must be greater than 0")
		}
	}
	positive("read_header_timeout", s.ReadHeaderTimeout)
	positive("body_read_timeout", s.BodyReadTimeout)
	positive("idle_timeout", s.IdleTimeout)
	positive("proxy_header_timeout", s.ProxyHeaderTimeout)
	if s.MaxHeaderBytes < 4<<10 || s.MaxHeaderBytes > 1<<20 {
		v.errorf("server.max_header_bytes", "must be between 4096 and 1048576")
	}
	if s.MaxConcurrentStreams < 1 || s.MaxConcurrentStreams > 10000 {
		v.errorf("server.max_concurrent_streams", "must be between 1 and 10000")
	}
}

func (v *validator) hsts(c *Config) {
	h := c.HSTS
	if h.Preload && (!h.IncludeSubdomains || h.MaxAge.D() < 365*24*time.Hour) {
		v.errorf("hsts.preload", "preload needs include_subdomains: true and a max_age of at least 8760h")
	}
	if h.MaxAge.D()%time.Second != 0 {
		v.errorf("hsts.max_age", "must be a whole number of seconds")
	}
}

var tokenRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

// reservedHeaders may not be used as identity header names: they carry
// protocol or credentials, and gatehouse treats them specially.
var reservedHeaders = []string{
	"authorization", "connection", "content-length", "content-type", "cookie", "forwarded",
	"host", "keep-alive", "proxy-authorization", "set-cookie", "te", "trailer",
	"transfer-encoding", "upgrade", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
}

func (v *validator) headers(c *Config) {
	h := c.Headers
	fields := []struct{ name, value string }{
		{"request_id", h.RequestID}, {"user", h.User}, {"email", h.Email},
		{"groups", h.Groups}, {"assertion", h.Assertion},
	}
	seen := map[string]string{}
	for _, f := range fields {
		p := "headers." + f.name
		norm := strings.ToLower(strings.ReplaceAll(f.value, "_", "-"))
		switch {
		case f.value == "":
			v.errorf(p, "required")
		case !tokenRE.MatchString(f.value):
			v.errorf(p, "invalid header name %q", f.value)
		case slices.Contains(reservedHeaders, norm):
			v.errorf(p, "%s cannot be used: it is a protocol or credential header", f.value)
		case seen[norm] != "":
			v.errorf(p, "header %s is already used by headers.%s", f.value, seen[norm])
		default:
			seen[norm] = f.name
		}
	}
}

func (v *validator) admin(c *Config) {
	a := c.Admin
	if a.Address == "off" {
		return
	}
	if err := checkHostPort(a.Address); err != nil {
		v.errorf("admin.address", "%v (or off)", err)
		return
	}
	host, _, _ := net.SplitHostPort(a.Address)
	loopback := host == "localhost"
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		loopback = true
	}
	if !loopback && a.Token.IsZero() {
		v.errorf("admin.address", "a non-loopback admin address needs admin.token, so metrics are not public")
	}
}

func (v *validator) audit(c *Config) {
	o := c.Audit.Output
	if o != "stdout" && o != "stderr" && !filepath.IsAbs(o) {
		v.errorf("audit.output", "want stdout, stderr or an absolute file path, got %q", o)
	}
}

func (v *validator) log(c *Config) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errorf("log.level", "unknown level %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		v.errorf("log.format", "unknown format %q (want json or text)", c.Log.Format)
	}
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

func (v *validator) upstreams(c *Config) {
	for _, name := range sortedKeys(c.Upstreams) {
		u := c.Upstreams[name]
		p := "upstreams." + name
		if !nameRE.MatchString(name) {
			v.keyErrorf(p, "invalid upstream name %q (letters, digits, _ . -)", name)
		}
		if u == nil {
			v.errorf(p, "empty upstream: targets are required")
			continue
		}
		if len(u.Targets) == 0 {
			v.errorf(p+".targets", "at least one target is required")
		}
		for i, t := range u.Targets {
			tp := fmt.Sprintf("%s.targets[%d]", p, i)
			if t.URL.URL == nil {
				if !v.decodeFailed[tp+".url"] {
					v.errorf(tp, "target URL is empty")
				}
				continue
			}
			switch {
			case t.Scheme != "http" && t.Scheme != "https":
				v.errorf(tp, "unsupported scheme %q (want http or https)", t.Scheme)
			case t.User != nil:
				v.errorf(tp, "credentials in a target URL are not allowed")
			case t.Path != "" && t.Path != "/":
				v.errorf(tp, "a target URL has no path (got %q); use routes for paths", t.Path)
			case t.RawQuery != "" || t.Fragment != "":
				v.errorf(tp, "a target URL has no query or fragment")
			case t.Port() != "":
				if n, err := strconv.Atoi(t.Port()); err != nil || n < 1 || n > 65535 {
					v.errorf(tp, "invalid port %q", t.Port())
				}
			}
		}
		if u.DialTimeout <= 0 {
			v.errorf(p+".dial_timeout", "must be greater than 0")
		}
		if u.ResponseHeaderTimeout <= 0 {
			v.errorf(p+".response_header_timeout", "must be greater than 0")
		}
		if u.IdleConnTimeout <= 0 {
			v.errorf(p+".idle_conn_timeout", "must be greater than 0")
		}
		if u.MaxIdleConnsPerTarget < 1 || u.MaxIdleConnsPerTarget > 100000 {
			v.errorf(p+".max_idle_conns_per_target", "must be between 1 and 100000")
		}
		v.pool(u, p)
	}
}

func (v *validator) routes(c *Config) {
	if len(c.Routes) == 0 {
		v.errorf("routes", "at least one route is required")
	}
	names := map[string]string{}
	matches := map[string]string{}
	for i := range c.Routes {
		r := &c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		hostOK := true
		if r.Host != "" {
			h, err := canonicalHostPattern(r.Host)
			if err != nil {
				v.errorf(p+".host", "%v", err)
				hostOK = false
			} else {
				r.Host = h
			}
		}
		pathOK := true
		if cp, err := canon.Path(r.Path); err != nil {
			v.errorf(p+".path", "invalid path %q: %v", r.Path, err)
			pathOK = false
		} else if cp != r.Path {
			v.errorf(p+".path", "path %q is not canonical (write %q)", r.Path, cp)
			pathOK = false
		}
		if len(r.Path) > 1 && strings.HasSuffix(r.Path, "/") && pathOK {
			r.Path = strings.TrimSuffix(r.Path, "/")
		}
		if hostOK && pathOK {
			key := r.Host + r.Path
			if prev, dup := matches[key]; dup {
				v.errorf(p, "matches the same host and path as %s", prev)
			}
			matches[key] = p
		}
		if r.Name == "" {
			host := r.Host
			if host == "" {
				host = "*"
			}
			r.Name = host + r.Path // a clash is reported as a duplicate match
		} else if !nameRE.MatchString(r.Name) {
			v.errorf(p+".name", "invalid route name %q (letters, digits, _ . -)", r.Name)
		} else if prev, dup := names[r.Name]; dup {
			v.errorf(p+".name", "name %q is already used by %s", r.Name, prev)
		}
		names[r.Name] = p
		v.routeIdentity(c, r, p)
		switch {
		case r.Upstream == "":
			if c.SPOE.Address == "" && !c.ForwardAuth {
				v.errorf(p+".upstream", "required (a route without one needs spoe.address or forward_auth)")
			}
		case c.Upstreams[r.Upstream] == nil:
			if _, ok := c.Upstreams[r.Upstream]; !ok {
				v.errorf(p+".upstream", "undefined upstream %q%s", r.Upstream, defined(sortedKeys(c.Upstreams)))
			}
		}
	}
}

func defined(names []string) string {
	if len(names) == 0 {
		return " (no upstreams are defined)"
	}
	return " (defined: " + strings.Join(names, ", ") + ")"
}

// canonicalHostPattern lower-cases a route host and checks it is a DNS name,
// optionally with a leading "*." wildcard, or an IP address.
func canonicalHostPattern(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("invalid host %q: a wildcard is allowed only as a leading \"*.\"", h)
	}
	if strings.ContainsAny(h, ":/") {
		return "", fmt.Errorf("invalid host %q: give the host name without scheme or port", h)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		if name != h {
			return "", fmt.Errorf("invalid host %q: a wildcard cannot apply to an IP address", h)
		}
		return h, nil
	}
	if !hostnameRE.MatchString(name) {
		return "", fmt.Errorf("invalid host %q", h)
	}
	return h, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
