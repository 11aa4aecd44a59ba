package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/policy"
)

// BuiltinProvider is the name of the built-in provider in routes.
const BuiltinProvider = "builtin"

// NeedsIdentity reports whether any route can require a signed-in user, or
// an identity source is configured: then public_url is required.
func (c *Config) NeedsIdentity() bool {
	if len(c.Identity.Providers) > 0 || c.Identity.Builtin != nil || len(c.Identity.Bearer) > 0 {
		return true
	}
	for _, r := range c.Routes {
		if r.Policy != nil && len(r.Policy.Allow) > 0 {
			return true
		}
	}
	return false
}

// ProviderNames returns the names of every sign-in provider, the built-in
// one last.
func (c *Config) ProviderNames() []string {
	var names []string
	for _, p := range c.Identity.Providers {
		names = append(names, p.Name)
	}
	if c.Identity.Builtin != nil {
		names = append(names, BuiltinProvider)
	}
	return names
}

// PolicyOptions converts p to the policy package's options.
func (p *Policy) PolicyOptions() policy.Options {
	if p == nil {
		return policy.Options{}
	}
	conv := func(rules []Rule) []policy.Rule {
		out := make([]policy.Rule, len(rules))
		for i, r := range rules {
			cidrs := make([]netip.Prefix, len(r.SourceCIDRs))
			for j, c := range r.SourceCIDRs {
				cidrs[j] = c.Prefix
			}
			if len(cidrs) == 0 {
				cidrs = nil
			}
			out[i] = policy.Rule{
				Name: r.Name, Authenticated: r.Authenticated, Groups: r.Groups,
				Emails: r.Emails, EmailDomains: r.EmailDomains, Claims: r.Claims,
				Methods: r.Methods, Paths: r.Paths, SourceCIDRs: cidrs, CEL: r.CEL,
			}
		}
		return out
	}
	return policy.Options{Allow: conv(p.Allow), Deny: conv(p.Deny), Public: p.Public}
}

// Compiled returns the compiled policy: the one validation built (so CEL
// is compiled once per load), or a new compilation for a Policy that was
// not validated.
func (p *Policy) Compiled() (*policy.Policy, error) {
	if p != nil && p.compiled != nil {
		return p.compiled, nil
	}
	return policy.Compile(p.PolicyOptions())
}

// ClaimNames returns the claims a route's policy conditions and identity
// headers read, which sessions must keep.
func (r *Route) ClaimNames() []string {
	var out []string
	if r.Policy != nil {
		for _, rules := range [][]Rule{r.Policy.Allow, r.Policy.Deny} {
			for _, rule := range rules {
				for name := range rule.Claims {
					out = append(out, name)
				}
			}
		}
	}
	for _, claim := range r.IdentityHeaders {
		out = append(out, claim)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var (
	keyIDRE      = regexp.MustCompile(`^[A-Za-z0-9]{1,8}$`)
	cookieNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)
	algorithms   = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

func (v *validator) identity(c *Config) {
	needs := c.NeedsIdentity()
	pu := c.PublicURL.URL
	switch {
	case pu == nil:
		if needs {
			v.errorf("public_url", "required when routes need sign-in or identity is configured (for example https://apps.example.com)")
		}
	case pu.Scheme != "https" && pu.Scheme != "http":
		v.errorf("public_url", "unsupported scheme %q (want https, or http on a loopback address)", pu.Scheme)
	case pu.Scheme == "http" && !loopbackHost(pu.Hostname()):
		v.errorf("public_url", "http is allowed only on a loopback address: sessions must not travel in clear text")
	case pu.User != nil || (pu.Path != "" && pu.Path != "/") || pu.RawQuery != "" || pu.Fragment != "":
		v.errorf("public_url", "want an origin only, such as https://apps.example.com (no path, query or user info)")
	}

	id := &c.Identity
	s := &id.Session
	if !cookieNameRE.MatchString(s.CookieName) {
		v.errorf("identity.session.cookie_name", "invalid cookie name %q (1 to 32 of letters, digits, _ . -)", s.CookieName)
	}
	seen := map[string]bool{}
	for i, k := range s.Keys {
		p := fmt.Sprintf("identity.session.keys[%d]", i)
		if !keyIDRE.MatchString(k.ID) {
			v.errorf(p+".id", "want 1 to 8 letters or digits")
		} else if seen[k.ID] {
			v.errorf(p+".id", "duplicate key ID %q", k.ID)
		}
		seen[k.ID] = true
		if k.Secret.IsZero() {
			v.errorf(p+".secret", "required")
		}
	}
	if s.IdleTimeout.D() < time.Minute {
		v.errorf("identity.session.idle_timeout", "must be at least 1m")
	}
	if s.AbsoluteLifetime < s.IdleTimeout {
		v.errorf("identity.session.absolute_lifetime", "must be at least idle_timeout (%v)", s.IdleTimeout)
	}
	if s.RefreshBefore <= 0 {
		v.errorf("identity.session.refresh_before", "must be greater than 0")
	}

	names := map[string]string{}
	for i := range id.Providers {
		pr := &id.Providers[i]
		p := fmt.Sprintf("identity.providers[%d]", i)
		switch {
		case !nameRE.MatchString(pr.Name):
			v.errorf(p+".name", "invalid provider name %q (letters, digits, _ . -)", pr.Name)
		case pr.Name == BuiltinProvider:
			v.errorf(p+".name", "%q is the built-in provider's name", BuiltinProvider)
		case names[pr.Name] != "":
			v.errorf(p+".name", "name %q is already used by %s", pr.Name, names[pr.Name])
		}
		names[pr.Name] = p
		if pr.DisplayName == "" {
			pr.DisplayName = pr.Name
		}
		v.endpointURL(p+".issuer", pr.Issuer, true)
		if pr.ClientID == "" {
			v.errorf(p+".client_id", "required")
		}
		if pr.GroupsClaim == "" {
			pr.GroupsClaim = "groups"
		}
		v.algorithms(p+".algorithms", pr.Algorithms)
	}
	if b := id.Builtin; b != nil {
		switch {
		case b.UsersFile == "" && !b.DemoUsers:
			v.errorf("identity.builtin.users_file", "required (or demo_users: true for a local trial)")
		case b.UsersFile != "" && b.DemoUsers:
			v.errorf("identity.builtin.demo_users", "give either users_file or demo_users, not both")
		}
		if b.DemoUsers {
			for i, l := range c.Listeners {
				host, _, err := net.SplitHostPort(l.Address)
				if err == nil && !loopbackHost(host) {
					v.errorf(fmt.Sprintf("listeners[%d].address", i), "demo users have public passwords: listen on a loopback address such as 127.0.0.1:8080, or use builtin.users_file")
				}
			}
		}
	}
	issuers := map[string]bool{}
	for i, b := range id.Bearer {
		p := fmt.Sprintf("identity.bearer[%d]", i)
		switch {
		case b.Issuer == "":
			v.errorf(p+".issuer", "required")
		case issuers[b.Issuer]:
			v.errorf(p+".issuer", "issuer %q is listed twice", b.Issuer)
		case pu != nil && strings.TrimSuffix(b.Issuer, "/") == strings.TrimSuffix(pu.String(), "/"):
			v.errorf(p+".issuer", "gatehouse's own assertions are never accepted as bearer tokens")
		}
		issuers[b.Issuer] = true
		v.endpointURL(p+".jwks_url", b.JWKSURL, true)
		if len(b.Audiences) == 0 {
			v.errorf(p+".audiences", "at least one audience is required")
		}
		for j, a := range b.Audiences {
			if a == "" {
				v.errorf(fmt.Sprintf("%s.audiences[%d]", p, j), "empty audience")
			}
		}
		v.algorithms(p+".algorithms", b.Algorithms)
	}
	seen = map[string]bool{}
	for i, k := range id.Assertion.Keys {
		p := fmt.Sprintf("identity.assertion.keys[%d]", i)
		if k.ID == "" || len(k.ID) > 64 {
			v.errorf(p+".id", "want 1 to 64 characters")
		} else if seen[k.ID] {
			v.errorf(p+".id", "duplicate key ID %q", k.ID)
		}
		seen[k.ID] = true
		if k.PrivateKey.IsZero() {
			v.errorf(p+".private_key", "required")
		}
	}
	if ttl := id.Assertion.TTL.D(); ttl < 30*time.Second || ttl > 5*time.Minute {
		v.errorf("identity.assertion.ttl", "must be between 30s and 5m")
	}
}

func (v *validator) endpointURL(path string, u URL, required bool) {
	switch {
	case u.URL == nil:
		if required {
			v.errorf(path, "required")
		}
	case u.Scheme != "https" && u.Scheme != "http":
		v.errorf(path, "unsupported scheme %q (want https)", u.Scheme)
	case u.Scheme == "http" && !loopbackHost(u.Hostname()):
		v.errorf(path, "http is allowed only on a loopback address (want https)")
	case u.User != nil || u.Fragment != "":
		v.errorf(path, "no user info or fragment allowed")
	}
}

func (v *validator) algorithms(path string, algs []string) {
	for i, a := range algs {
		if !slices.Contains(algorithms, a) {
			v.errorf(fmt.Sprintf("%s[%d]", path, i), "unsupported algorithm %q (want one of %s; never HS* or none)", a, strings.Join(algorithms, ", "))
		}
	}
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// routeIdentity checks a route's policy, providers and identity headers.
func (v *validator) routeIdentity(c *Config, r *Route, p string) {
	if r.Policy == nil {
		v.errorf(p+".policy", `required: gatehouse denies unless a rule allows (use policy: {public: ["/"]} for a route open to everyone)`)
	} else {
		v.policy(r.Policy, p+".policy")
		if len(r.Policy.Allow) > 0 && len(c.ProviderNames()) == 0 && len(c.Identity.Bearer) == 0 {
			v.errorf(p+".policy.allow", "allow rules need someone to sign in: configure identity.providers, identity.builtin or identity.bearer")
		}
	}
	known := c.ProviderNames()
	for i, name := range r.Providers {
		if !slices.Contains(known, name) {
			v.errorf(fmt.Sprintf("%s.providers[%d]", p, i), "undefined provider %q%s", name, definedProviders(known))
		}
	}
	for _, name := range sortedKeys(r.IdentityHeaders) {
		hp := p + ".identity_headers." + name
		norm := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		switch {
		case !tokenRE.MatchString(name):
			v.keyErrorf(hp, "invalid header name %q", name)
		case slices.Contains(reservedHeaders, norm):
			v.keyErrorf(hp, "%s cannot be used: it is a protocol or credential header", name)
		case slices.ContainsFunc([]string{c.Headers.User, c.Headers.Email, c.Headers.Groups, c.Headers.Assertion, c.Headers.RequestID},
			func(h string) bool { return strings.EqualFold(strings.ReplaceAll(h, "_", "-"), norm) }):
			v.keyErrorf(hp, "%s is already one of gatehouse's headers", name)
		}
		if r.IdentityHeaders[name] == "" {
			v.errorf(hp, "claim name required")
		}
	}
}

func definedProviders(names []string) string {
	if len(names) == 0 {
		return " (no providers are configured)"
	}
	names = slices.Clone(names)
	slices.Sort(names)
	return " (defined: " + strings.Join(slices.Compact(names), ", ") + ")"
}

// policy compiles the policy to report its problems (bad globs, CEL that
// does not type-check, ...) at their position.
func (v *validator) policy(pol *Policy, p string) {
	compiled, err := policy.Compile(pol.PolicyOptions())
	if err == nil {
		pol.compiled = compiled
		return
	}
	index := map[string]string{}
	for kind, rules := range map[string][]Rule{"allow": pol.Allow, "deny": pol.Deny} {
		for i, r := range rules {
			name := r.Name
			if name == "" {
				name = fmt.Sprintf("%s[%d]", kind, i)
			}
			if _, dup := index[name]; !dup {
				index[name] = fmt.Sprintf("%s.%s[%d]", p, kind, i)
			}
		}
	}
	var errs interface{ Unwrap() []error }
	list := []error{err}
	if errors.As(err, &errs) {
		list = errs.Unwrap()
	}
	for _, e := range list {
		var fe *policy.FieldError
		if !errors.As(e, &fe) {
			v.errorf(p, "%v", e)
			continue
		}
		if fe.Rule == "public" {
			v.errorf(p+"."+fe.Field, "%v", fe.Err)
			continue
		}
		base, ok := index[fe.Rule]
		if !ok {
			base = p
		}
		field := base
		if fe.Field != "" {
			field += "." + fe.Field
		}
		v.errorf(field, "%v", fe.Err)
	}
}
