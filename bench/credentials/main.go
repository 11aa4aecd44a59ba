// Command credentials makes the credentials bench/run.sh sends to the
// authenticating contenders, so that no browser is needed:
//
//	credentials session -key-file FILE -issuer URL -provider NAME [-cookie-name gh_session]
//	    seals a gatehouse session cookie with internal/session, exactly as
//	    gatehouse's own cookie store would after a login, and prints its value.
//	credentials issuer -addr HOST:PORT -audience AUD -token-file FILE
//	    serves an OpenID discovery document and a JWKS on a loopback address,
//	    writes one RS256 JWT access token for that issuer to FILE, and serves
//	    until SIGTERM or SIGINT.
//	credentials dex-config -issuer URL -client ID=SECRET=REDIRECT_URI... -out FILE
//	    writes a configuration for bin/dex (make dex) with the bench user.
//	credentials login -start URL -callback-prefix URL -cookie-name NAME
//	    signs the bench user in through a relying party (oauth2-proxy) and its
//	    Dex with internal/testenv.Login, and prints the Cookie header value
//	    the relying party set.
//
// Every subcommand talks to loopback addresses only. It is a bench tool, not
// part of gatehouse: the bench user's password is public.
package main

import (
	"fmt"
	"os"
)

// The bench user, the same person in every credential: the gatehouse
// session, the bearer token and the Dex account behind oauth2-proxy's
// cookie.
const (
	benchUsername = "ada"
	benchEmail    = "ada@bench.example"
	benchName     = "Ada Bench"
	benchPassword = "bench-only-password" // public: loopback bench only
	benchSubject  = "bench-user-0001"
)

// benchGroups are the bench user's groups; the bench routes allow "staff".
var benchGroups = []string{"staff", "analysts", "engineering", "oncall"}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "session":
		err = runSession(args)
	case "issuer":
		err = runIssuer(args)
	case "dex-config":
		err = runDexConfig(args)
	case "login":
		err = runLogin(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "credentials %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: credentials session|issuer|dex-config|login [flags] (see the package documentation)")
	os.Exit(2)
}
