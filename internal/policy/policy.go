// Package policy compiles per-route access rules once and evaluates them per
// request.
//
// A [Policy] is built by [Compile] from [Options] and is immutable afterwards,
// so one Policy may be shared by any number of goroutines. [Policy.Decide]
// looks only at an [Input]: the canonical method, host and path of the request
// (never the query), the client address and the signed-in [Identity], if any.
// The package imports no other gatehouse package and does not know about
// net/http; the caller canonicalizes the request (security notes I3) and maps
// the [Decision] to a response.
//
// # Semantics
//
// Decide applies these steps in order and stops at the first that yields a
// decision:
//
//  1. An Input whose Path does not start with "/" is denied with
//     [ReasonInvalidInput]. The caller should never produce one; failing
//     closed here keeps a canonicalization bug from turning into an allow.
//  2. Deny rules are tried in order. The first one that matches denies the
//     request with [ReasonDeniedByRule] and its name. Deny rules win over
//     everything, including Public paths.
//  3. If the path matches a Public pattern, the request is allowed without
//     login ([ReasonPublic], Decision.Public set).
//  4. Allow rules are tried in order. The first one that matches allows the
//     request ([ReasonAllowedByRule]) and names the rule.
//  5. Nothing allowed the request. Without an identity, if some Allow rule
//     matches every request condition (method, path, source) and only lacks
//     a signed-in user, the decision is NeedLogin with [ReasonNoSession];
//     signing in could help, so the caller should start a login. Otherwise
//     the request is denied with [ReasonNoRuleMatched]: no login would help.
//  6. With an identity, the request is denied. The reason names the one
//     unmet condition of the closest Allow rule: the rule with the fewest
//     unmet conditions, the first in order on a tie, where any rule whose
//     Paths match the request is closer than every rule whose Paths do not
//     (so a rule for another path never explains a denial on this one).
//     When that rule misses exactly one condition the reason is
//     [ReasonMethodDenied], [ReasonPathDenied], [ReasonSourceDenied],
//     [ReasonGroupDenied], [ReasonEmailDenied], [ReasonClaimDenied] or
//     [ReasonCELDenied], and Decision.Rule names the rule; otherwise it is
//     [ReasonNoRuleMatched]. The reason is for the
//     audit record and the operator; do not show it to the client.
//
// A Policy with no Allow rules and no Public paths therefore denies every
// request (deny by default).
//
// A [Rule] is a conjunction of conditions; a condition whose field is empty
// matches anything. Emails and EmailDomains form one condition together
// (the address is listed, or its domain is), since requiring both is never
// what an operator means. Any identity condition implies Authenticated, and a
// rule with an identity condition never matches an anonymous request. That
// holds for Deny rules too: a Deny rule on Groups only affects signed-in
// users.
//
// Matching is exact and deliberately unclever:
//
//   - Groups and claim values are compared as exact, case-sensitive strings.
//   - Emails and email domains are compared ASCII case-insensitively, and
//     only when the identity's EmailVerified is true: an unverified address
//     proves nothing about who holds it. Unicode case folding is not applied,
//     so "\u212A" (KELVIN SIGN) does not match "k".
//   - An EmailDomains entry "example.com" matches a@example.com only, never
//     a@sub.example.com, a@evil-example.com or a@example.com.evil.com. The
//     entry "*.example.com" matches every subdomain (a@sub.example.com,
//     a@x.sub.example.com) but not example.com itself; list both to accept
//     both. The domain is what follows the last "@".
//   - Methods are compared exactly against the canonical upper-case method.
//   - SourceCIDRs match the client address with IPv4-mapped IPv6 addresses
//     unmapped; an invalid (zero) address matches no CIDR.
//   - Paths, see [Rule.Paths].
//
// Claim conditions look up a claim by its full name first (so namespaced
// claims such as "https://example.com/roles" work) and, only if there is no
// such top-level claim, by walking a dotted path through nested objects
// ("realm_access.roles"). A claim value matches if it is a string equal to an
// accepted value, a bool whose "true"/"false" spelling is accepted, a number
// equal to an accepted value that parses as a number, or a list any element
// of which matches by these rules. Objects never match.
//
// A rule's optional CEL expression (see [Rule.CEL]) is one more condition,
// evaluated last. An expression that fails at run time denies the request
// with [ReasonCELError], whichever kind of rule it belongs to. Expressions
// are compiled and type-checked by [Compile], so a typo is a configuration
// error, never a surprise at request time.
package policy

import (
	"net/netip"
	"strings"
)

// Reasons explain a [Decision]. They are stable kebab-case identifiers for
// audit records and metrics; never show them to the client.
const (
	// ReasonAllowedByRule: an Allow rule matched; Decision.Rule names it.
	ReasonAllowedByRule = "allowed-by-rule"
	// ReasonPublic: the path matched a Public pattern and no Deny rule matched.
	ReasonPublic = "public"
	// ReasonDeniedByRule: a Deny rule matched; Decision.Rule names it.
	ReasonDeniedByRule = "denied-by-rule"
	// ReasonNoSession: nobody is signed in and an Allow rule would apply to
	// a signed-in user; Decision.NeedLogin is set.
	ReasonNoSession = "no-session"
	// ReasonNoRuleMatched: no rule allowed the request and no more specific
	// reason applies. Also the reason of every decision of an empty Policy.
	ReasonNoRuleMatched = "no-rule-matched"
	// ReasonMethodDenied: the closest Allow rule failed only on the method.
	ReasonMethodDenied = "method-denied"
	// ReasonPathDenied: the closest Allow rule failed only on the path.
	ReasonPathDenied = "path-denied"
	// ReasonSourceDenied: the closest Allow rule failed only on the client
	// address.
	ReasonSourceDenied = "source-denied"
	// ReasonGroupDenied: the closest Allow rule failed only on groups.
	ReasonGroupDenied = "group-denied"
	// ReasonEmailDenied: the closest Allow rule failed only on the email
	// address or domain (including an unverified email).
	ReasonEmailDenied = "email-denied"
	// ReasonClaimDenied: the closest Allow rule failed only on claims.
	ReasonClaimDenied = "claim-denied"
	// ReasonCELDenied: the closest Allow rule failed only on its CEL
	// expression.
	ReasonCELDenied = "cel-denied"
	// ReasonCELError: a CEL expression of a rule whose other conditions all
	// held failed to evaluate (or exceeded its cost limit). The request is
	// denied whether the rule is an Allow or a Deny rule: fail closed.
	ReasonCELError = "cel-error"
	// ReasonInvalidInput: the Input's path is not canonical (it does not
	// start with "/"); a caller bug, denied to fail closed.
	ReasonInvalidInput = "invalid-input"
)

// Input is what a decision looks at.
type Input struct {
	// Method is the canonical (upper-case) request method.
	Method string
	// Host is the canonical request host, lower case, without port. No
	// condition looks at it yet; routing has already selected the Policy by
	// host.
	Host string
	// Path is the canonical path: no query, no fragment, dot-segments and
	// duplicate slashes resolved, no encoded separators. It must start with
	// "/".
	Path string
	// SourceIP is the client address as established by the trusted
	// front end (the PROXY header), not X-Forwarded-For from the client.
	SourceIP netip.Addr
	// Identity is the signed-in user, nil when nobody is signed in.
	Identity *Identity
}

// Identity is the part of a verified identity that policy looks at.
type Identity struct {
	Issuer  string
	Subject string
	Email   string
	// EmailVerified reports the IdP's email_verified claim. Email and
	// EmailDomains conditions never match when it is false.
	EmailVerified bool
	Groups        []string
	// Claims holds the verified token claims as decoded from JSON (strings,
	// float64, bool, []any, map[string]any).
	Claims     map[string]any
	AuthMethod string
}

// Decision is the outcome of [Policy.Decide]. At most one of Allow and
// NeedLogin is set; when neither is, the request is denied.
type Decision struct {
	// Allow reports that the request may be forwarded.
	Allow bool
	// Public reports that Allow came from a Public path, without login.
	Public bool
	// NeedLogin reports that nobody is signed in and signing in could lead
	// to Allow; the caller starts a login (or answers 401 to an API client).
	NeedLogin bool
	// Rule names the rule behind the decision, if there is one.
	Rule string
	// Reason is one of the Reason constants.
	Reason string
}

// Policy is a compiled set of rules. It is immutable and safe for
// concurrent use.
type Policy struct {
	allow  []compiledRule
	deny   []compiledRule
	public []pathPattern
}

// Decide evaluates the policy for one request. It does not allocate unless
// a CEL expression runs, and it never panics on any Input.
func (p *Policy) Decide(in Input) Decision {
	if len(in.Path) == 0 || in.Path[0] != '/' {
		return Decision{Reason: ReasonInvalidInput}
	}
	for i := range p.deny {
		r := &p.deny[i]
		switch m := r.unmet(&in, false); {
		case m == 0:
			return Decision{Rule: r.name, Reason: ReasonDeniedByRule}
		case m&condCELError != 0:
			return Decision{Rule: r.name, Reason: ReasonCELError}
		}
	}
	for i := range p.public {
		if p.public[i].match(in.Path) {
			return Decision{Allow: true, Public: true, Reason: ReasonPublic}
		}
	}
	for i := range p.allow {
		r := &p.allow[i]
		switch m := r.unmet(&in, false); {
		case m == 0:
			return Decision{Allow: true, Rule: r.name, Reason: ReasonAllowedByRule}
		case m&condCELError != 0:
			return Decision{Rule: r.name, Reason: ReasonCELError}
		}
	}
	if in.Identity == nil {
		for i := range p.allow {
			r := &p.allow[i]
			// Every identity condition is unmet without an identity; if
			// nothing else is, a login could satisfy the rule.
			if r.unmet(&in, true)&^identityConds == 0 {
				return Decision{NeedLogin: true, Rule: r.name, Reason: ReasonNoSession}
			}
		}
		return Decision{Reason: ReasonNoRuleMatched}
	}
	best, bestN := -1, 0
	var bestMask cond
	for i := range p.allow {
		m := p.allow[i].unmet(&in, true) &^ condCELError
		n := m.count()
		if m&condPath != 0 {
			// A rule for another path is farther than any rule for this
			// one, however many conditions that one misses.
			n += 8
		}
		if best < 0 || n < bestN {
			best, bestN, bestMask = i, n, m
		}
	}
	if best < 0 || bestMask.count() != 1 {
		return Decision{Reason: ReasonNoRuleMatched}
	}
	return Decision{Rule: p.allow[best].name, Reason: bestMask.reason()}
}

// cond is a bit set of the conditions of a rule.
type cond uint16

const (
	condAuthenticated cond = 1 << iota
	condMethod
	condPath
	condSource
	condGroup
	condEmail
	condClaim
	condCEL
	// condCELError accompanies condCEL when the expression failed to
	// evaluate; Decide then denies with ReasonCELError.
	condCELError
)

// identityConds are the conditions that need an identity.
const identityConds = condAuthenticated | condGroup | condEmail | condClaim

func (c cond) count() int {
	n := 0
	for ; c != 0; c &= c - 1 {
		n++
	}
	return n
}

// reason maps a single unmet condition to its reason.
func (c cond) reason() string {
	switch c {
	case condMethod:
		return ReasonMethodDenied
	case condPath:
		return ReasonPathDenied
	case condSource:
		return ReasonSourceDenied
	case condGroup:
		return ReasonGroupDenied
	case condEmail:
		return ReasonEmailDenied
	case condClaim:
		return ReasonClaimDenied
	case condCEL:
		return ReasonCELDenied
	}
	return ReasonNoRuleMatched
}

// compiledRule is a validated Rule in the form Decide needs.
type compiledRule struct {
	name          string
	authenticated bool // set explicitly or implied by an identity condition
	methods       []string
	paths         []pathPattern
	cidrs         []netip.Prefix
	groups        map[string]struct{}
	emails        []string // lower case
	domains       []string // lower case, exact
	subdomains    []string // lower case, with the leading ".", from "*.example.com"
	claims        []claimCond
	cel           *celProgram // nil without a CEL expression
	celUsesUser   bool        // the expression refers to user.*
}

// unmet returns the conditions of r that in does not satisfy. With full
// false it stops at the first unmet condition, which is all a match needs.
func (r *compiledRule) unmet(in *Input, full bool) cond {
	var m cond
	if len(r.methods) > 0 && !containsString(r.methods, in.Method) {
		if m |= condMethod; !full {
			return m
		}
	}
	if len(r.paths) > 0 && !matchAnyPath(r.paths, in.Path) {
		if m |= condPath; !full {
			return m
		}
	}
	if len(r.cidrs) > 0 && !containsAddr(r.cidrs, in.SourceIP) {
		if m |= condSource; !full {
			return m
		}
	}
	id := in.Identity
	if !r.authenticated {
		return r.celUnmet(in, m, full)
	}
	if id == nil {
		// The CEL expression is not evaluated: it refers to user, so
		// condAuthenticated already covers it.
		m |= condAuthenticated
		if len(r.groups) > 0 {
			m |= condGroup
		}
		if len(r.emails) > 0 || len(r.domains) > 0 || len(r.subdomains) > 0 {
			m |= condEmail
		}
		if len(r.claims) > 0 {
			m |= condClaim
		}
		return m
	}
	if len(r.groups) > 0 && !r.groupMatch(id.Groups) {
		if m |= condGroup; !full {
			return m
		}
	}
	if (len(r.emails) > 0 || len(r.domains) > 0 || len(r.subdomains) > 0) && !r.emailMatch(id) {
		if m |= condEmail; !full {
			return m
		}
	}
	for i := range r.claims {
		if !r.claims[i].match(id.Claims) {
			if m |= condClaim; !full {
				return m
			}
			break
		}
	}
	return r.celUnmet(in, m, full)
}

// celUnmet adds the CEL condition to m. The expression runs last, and only
// when every other condition held or a full evaluation is wanted.
func (r *compiledRule) celUnmet(in *Input, m cond, full bool) cond {
	if r.cel == nil || (m != 0 && !full) {
		return m
	}
	ok, err := r.cel.eval(in)
	switch {
	case err != nil:
		return m | condCEL | condCELError
	case !ok:
		return m | condCEL
	}
	return m
}

func (r *compiledRule) groupMatch(groups []string) bool {
	for _, g := range groups {
		if _, ok := r.groups[g]; ok {
			return true
		}
	}
	return false
}

func (r *compiledRule) emailMatch(id *Identity) bool {
	if !id.EmailVerified {
		return false
	}
	at := strings.LastIndexByte(id.Email, '@')
	if at <= 0 || at == len(id.Email)-1 {
		return false
	}
	for _, e := range r.emails {
		if asciiEqualFold(e, id.Email) {
			return true
		}
	}
	domain := id.Email[at+1:]
	for _, d := range r.domains {
		if asciiEqualFold(d, domain) {
			return true
		}
	}
	for _, s := range r.subdomains {
		// s is ".example.com"; the domain must be longer than it so that
		// something non-empty precedes the dot.
		if len(domain) > len(s) && asciiEqualFold(s, domain[len(domain)-len(s):]) {
			return true
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsAddr(prefixes []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func matchAnyPath(patterns []pathPattern, path string) bool {
	for i := range patterns {
		if patterns[i].match(path) {
			return true
		}
	}
	return false
}

// asciiEqualFold reports whether a and b are equal under ASCII case folding
// only. strings.EqualFold applies Unicode simple folding, under which
// "\u212A" (KELVIN SIGN) equals "k", which would let a look-alike address
// match an allowed one.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
