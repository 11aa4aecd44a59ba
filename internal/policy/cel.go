package policy

import (
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/interpreter"
)

// celCostLimit bounds the work of one evaluation, so that an expression
// over attacker-influenced values (a long path, many groups or claims)
// cannot take unbounded time. Exceeding it is an evaluation error, which
// denies.
const celCostLimit = 10_000

// celEnv declares the variables of Rule.CEL as qualified names, so that the
// type checker rejects misspelled fields ("request.mehtod") at Compile.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("request.method", cel.StringType),
		cel.Variable("request.host", cel.StringType),
		cel.Variable("request.path", cel.StringType),
		cel.Variable("request.source_ip", cel.StringType),
		cel.Variable("user.issuer", cel.StringType),
		cel.Variable("user.subject", cel.StringType),
		cel.Variable("user.email", cel.StringType),
		cel.Variable("user.email_verified", cel.BoolType),
		cel.Variable("user.auth_method", cel.StringType),
		cel.Variable("user.groups", cel.ListType(cel.StringType)),
		cel.Variable("user.claims", cel.MapType(cel.StringType, cel.DynType)),
	)
})

// celProgram is a compiled, type-checked CEL expression.
type celProgram struct {
	prg cel.Program
}

// compileCEL parses and checks expr; usesUser reports whether it refers to
// any user variable.
func compileCEL(expr string) (prg *celProgram, usesUser bool, err error) {
	env, err := celEnv()
	if err != nil {
		return nil, false, fmt.Errorf("%w: environment: %w", ErrBadCEL, err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, false, fmt.Errorf("%w: %s", ErrBadCEL, celMessage(iss.Err().Error()))
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, false, fmt.Errorf("%w: result type is %v, want bool", ErrBadCEL, ast.OutputType())
	}
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if strings.HasPrefix(ref.Name, "user.") {
			usesUser = true
		}
	}
	p, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrBadCEL, err)
	}
	return &celProgram{prg: p}, usesUser, nil
}

// celMessage keeps the message lines of a CEL error and drops the source
// excerpt and caret lines (" | ..."), so that each Compile problem stays on
// one line; the position is in the message ("<input>:1:8").
func celMessage(msg string) string {
	var parts []string
	for line := range strings.SplitSeq(msg, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "|") {
			parts = append(parts, t)
		}
	}
	return strings.Join(parts, "; ")
}

// eval runs the program on in. A non-bool result is an error.
func (p *celProgram) eval(in *Input) (bool, error) {
	// The activation holds a copy so that in, and with it Decide's Input,
	// does not escape to the heap on the paths that run no CEL.
	out, _, err := p.prg.Eval(&celActivation{in: *in})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("CEL result %v is not a bool", out.Type())
	}
	return b, nil
}

// celActivation resolves the declared variables from an Input without
// building a map per request. Without an identity the user variables are
// empty values; expressions that use them are only evaluated for signed-in
// users (they imply Authenticated).
type celActivation struct{ in Input }

var (
	noGroups = []string{}
	noClaims = map[string]any{}
)

func (a *celActivation) ResolveName(name string) (any, bool) {
	in := &a.in
	switch name {
	case "request.method":
		return in.Method, true
	case "request.host":
		return in.Host, true
	case "request.path":
		return in.Path, true
	case "request.source_ip":
		if !in.SourceIP.IsValid() {
			return "", true
		}
		return in.SourceIP.Unmap().String(), true
	}
	id := in.Identity
	switch name {
	case "user.issuer":
		return idString(id, func(id *Identity) string { return id.Issuer }), true
	case "user.subject":
		return idString(id, func(id *Identity) string { return id.Subject }), true
	case "user.email":
		return idString(id, func(id *Identity) string { return id.Email }), true
	case "user.auth_method":
		return idString(id, func(id *Identity) string { return id.AuthMethod }), true
	case "user.email_verified":
		return id != nil && id.EmailVerified, true
	case "user.groups":
		if id == nil || id.Groups == nil {
			return noGroups, true
		}
		return id.Groups, true
	case "user.claims":
		if id == nil || id.Claims == nil {
			return noClaims, true
		}
		return id.Claims, true
	}
	return nil, false
}

func (*celActivation) Parent() interpreter.Activation { return nil }

func idString(id *Identity, f func(*Identity) string) string {
	if id == nil {
		return ""
	}
	return f(id)
}
