package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Options configure a [Policy]. The zero value compiles to a Policy that
// denies every request.
type Options struct {
	// Allow rules are tried in order; the first that matches allows the
	// request.
	Allow []Rule
	// Deny rules are tried before anything else; the first that matches
	// denies the request, even on a Public path.
	Deny []Rule
	// Public lists path patterns (see [Rule.Paths]) that are allowed without
	// login, unless a Deny rule matches.
	Public []string
}

// Rule is a conjunction of conditions: every condition whose field is set
// must hold; an empty field matches anything. A rule with no condition at
// all is an error: use Options.Public to open a path to everyone.
type Rule struct {
	// Name identifies the rule in decisions, audit records and errors.
	// Names must be unique within a Policy. Default: "allow[i]" or
	// "deny[i]" by position.
	Name string
	// Authenticated requires a signed-in user. It is implied by Groups,
	// Emails, EmailDomains and Claims.
	Authenticated bool
	// Groups is satisfied when the user is in any of these groups. Exact,
	// case-sensitive comparison.
	Groups []string
	// Emails and EmailDomains together form one condition: the user's
	// verified email address is one of Emails (ASCII case-insensitive), or
	// its domain is one of EmailDomains. An EmailDomains entry
	// "example.com" matches exactly that domain; "*.example.com" matches
	// any subdomain of example.com but not example.com itself. An
	// unverified address never matches.
	Emails       []string
	EmailDomains []string
	// Claims maps a claim name to its accepted values; every listed claim
	// must hold an accepted value. The name is looked up as a top-level
	// claim first, then as a dotted path through nested objects
	// ("realm_access.roles"). A list claim matches if any element is
	// accepted. Values are compared as exact strings; bools as
	// "true"/"false"; numbers numerically.
	Claims map[string][]string
	// Methods lists the accepted request methods, upper case, e.g. "GET".
	Methods []string
	// Paths lists path patterns; the request path must match one. A
	// pattern without "*" is a prefix on segment boundaries: "/api" covers
	// "/api" and "/api/x" but not "/apix"; "/api/" covers "/api/x" but not
	// "/api". A pattern with "*" is a glob matched against the whole path:
	// within a segment "*" matches any run of characters except "/"
	// (possibly none), and a whole segment "**" matches zero or more
	// segments, so "/api/**" covers "/api", "/api/" and "/api/a/b". Every
	// pattern starts with "/"; dot-segments and empty inner segments are
	// errors since a canonical path never has them.
	Paths []string
	// SourceCIDRs lists the accepted client networks.
	SourceCIDRs []netip.Prefix
	// CEL is an optional CEL expression that must evaluate to true. It is
	// parsed and type-checked by Compile and sees these variables:
	//
	//	request.method, request.host, request.path, request.source_ip  string
	//	user.issuer, user.subject, user.email, user.auth_method         string
	//	user.email_verified                                             bool
	//	user.groups                                                     list(string)
	//	user.claims                                                     map(string, dyn)
	//
	// request.source_ip is "" when the address is unknown. An expression
	// that refers to any user variable implies Authenticated. Evaluation is
	// bounded by a cost limit; exceeding it is an evaluation error.
	CEL string
}

// Errors reported by [Compile], each wrapped in a [FieldError].
var (
	ErrEmptyRule     = errors.New("rule has no conditions (use public paths to allow everyone)")
	ErrUnknownMethod = errors.New("unknown method")
	ErrDuplicateName = errors.New("duplicate rule name")
	ErrBadEmail      = errors.New("bad email")
	ErrBadDomain     = errors.New("bad email domain")
	ErrBadClaim      = errors.New("bad claim condition")
	ErrBadCIDR       = errors.New("bad CIDR")
	ErrEmptyValue    = errors.New("empty value")
	ErrBadCEL        = errors.New("bad CEL expression")
)

// FieldError is one problem found by [Compile].
type FieldError struct {
	// Rule is the rule's name, or "public" for Options.Public.
	Rule string
	// Field names the field and, for lists, the index: "paths[1]".
	Field string
	Err   error
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("rule %q: %v", e.Rule, e.Err)
	}
	return fmt.Sprintf("rule %q: %s: %v", e.Rule, e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// knownMethods are the methods of RFC 9110 §9 and RFC 5789 (PATCH).
var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// Compile validates opts and builds a Policy. It reports every problem at
// once, joined with [errors.Join] in rule order; each is a [*FieldError].
func Compile(opts Options) (*Policy, error) {
	var errs []error
	p := &Policy{}
	names := map[string]bool{}
	compileRules := func(kind string, rules []Rule) []compiledRule {
		out := make([]compiledRule, 0, len(rules))
		for i, r := range rules {
			name := r.Name
			if name == "" {
				name = fmt.Sprintf("%s[%d]", kind, i)
			}
			if names[name] {
				errs = append(errs, &FieldError{Rule: name, Field: "name", Err: ErrDuplicateName})
			}
			names[name] = true
			cr, rerrs := compileRule(name, r)
			errs = append(errs, rerrs...)
			out = append(out, cr)
		}
		return out
	}
	p.deny = compileRules("deny", opts.Deny)
	p.allow = compileRules("allow", opts.Allow)
	for i, raw := range opts.Public {
		pp, err := compilePath(raw)
		if err != nil {
			errs = append(errs, &FieldError{Rule: "public", Field: fmt.Sprintf("public[%d]", i), Err: err})
			continue
		}
		p.public = append(p.public, pp)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

func compileRule(name string, r Rule) (compiledRule, []error) {
	var errs []error
	fail := func(field string, i int, err error) {
		if i >= 0 {
			field = fmt.Sprintf("%s[%d]", field, i)
		}
		errs = append(errs, &FieldError{Rule: name, Field: field, Err: err})
	}
	cr := compiledRule{name: name}

	for i, m := range r.Methods {
		if !slices.Contains(knownMethods, m) {
			fail("methods", i, fmt.Errorf("%w %q (want one of %s)", ErrUnknownMethod, m, strings.Join(knownMethods, ", ")))
			continue
		}
		cr.methods = append(cr.methods, m)
	}
	for i, raw := range r.Paths {
		pp, err := compilePath(raw)
		if err != nil {
			fail("paths", i, err)
			continue
		}
		cr.paths = append(cr.paths, pp)
	}
	for i, c := range r.SourceCIDRs {
		if !c.IsValid() {
			fail("source_cidrs", i, ErrBadCIDR)
			continue
		}
		// Unmap so that ::ffff:10.0.0.0/104 means 10.0.0.0/8, as the
		// address it is compared with is unmapped too.
		if c.Addr().Is4In6() && c.Bits() >= 96 {
			c = netip.PrefixFrom(c.Addr().Unmap(), c.Bits()-96)
		}
		cr.cidrs = append(cr.cidrs, c.Masked())
	}
	for i, g := range r.Groups {
		if g == "" {
			fail("groups", i, ErrEmptyValue)
			continue
		}
		if cr.groups == nil {
			cr.groups = make(map[string]struct{}, len(r.Groups))
		}
		cr.groups[g] = struct{}{}
	}
	for i, e := range r.Emails {
		at := strings.LastIndexByte(e, '@')
		if at <= 0 || at == len(e)-1 || strings.ContainsAny(e, " \t\r\n") {
			fail("emails", i, fmt.Errorf("%w %q", ErrBadEmail, e))
			continue
		}
		cr.emails = append(cr.emails, strings.ToLower(e))
	}
	for i, d := range r.EmailDomains {
		d = strings.ToLower(d)
		sub := strings.HasPrefix(d, "*.")
		bare := strings.TrimPrefix(d, "*.")
		if !validDomain(bare) {
			fail("email_domains", i, fmt.Errorf("%w %q (want \"example.com\" or \"*.example.com\")", ErrBadDomain, r.EmailDomains[i]))
			continue
		}
		if sub {
			cr.subdomains = append(cr.subdomains, "."+bare)
		} else {
			cr.domains = append(cr.domains, bare)
		}
	}
	// Sort claim names so that errors and evaluation order are
	// deterministic.
	claimNames := make([]string, 0, len(r.Claims))
	for k := range r.Claims {
		claimNames = append(claimNames, k)
	}
	slices.Sort(claimNames)
	for _, k := range claimNames {
		vals := r.Claims[k]
		field := fmt.Sprintf("claims[%q]", k)
		switch {
		case k == "" || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, ".."):
			fail(field, -1, fmt.Errorf("%w: bad claim name", ErrBadClaim))
		case len(vals) == 0:
			fail(field, -1, fmt.Errorf("%w: no accepted values", ErrBadClaim))
		default:
			cr.claims = append(cr.claims, newClaimCond(k, vals))
		}
	}

	if r.CEL != "" {
		prg, usesUser, err := compileCEL(r.CEL)
		if err != nil {
			fail("cel", -1, err)
		}
		cr.cel, cr.celUsesUser = prg, usesUser
	}

	cr.authenticated = r.Authenticated || len(r.Groups) > 0 || len(r.Emails) > 0 ||
		len(r.EmailDomains) > 0 || len(r.Claims) > 0 || cr.celUsesUser
	if !cr.authenticated && len(r.Methods) == 0 && len(r.Paths) == 0 && len(r.SourceCIDRs) == 0 && r.CEL == "" {
		fail("", -1, ErrEmptyRule)
	}
	return cr, errs
}

// validDomain accepts lower-case DNS names of at least two labels, made of
// ASCII letters, digits and hyphens (IDNs in their xn-- form).
func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}
