// Command gatehouse is an identity-aware reverse proxy.
//
//	gatehouse serve -config FILE     run the proxy
//	gatehouse check -config FILE     validate a configuration, print every problem
//	gatehouse quickstart             run on embedded defaults in front of the demo app
//	gatehouse demo -addr ADDR        run only the demo app
//	gatehouse hash-password          read a password on stdin, print its bcrypt hash
//	gatehouse version                print version, commit and Go version
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-proxy/gatehouse/examples"
	"github.com/gatehouse-proxy/gatehouse/internal/app"
	"github.com/gatehouse-proxy/gatehouse/internal/config"
	"github.com/gatehouse-proxy/gatehouse/internal/demoapp"
	"github.com/gatehouse-proxy/gatehouse/internal/idp"
)

// Set by the linker: -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: gatehouse <command> [flags]

commands:
  serve -config FILE     run the proxy
  check -config FILE     validate a configuration file
  quickstart [-addr A]   run on embedded defaults in front of the demo app
  demo -addr ADDR        run only the demo app
  hash-password [-cost N] read a password (first line of stdin), print its bcrypt hash
  metabase deprovision -config FILE -route NAME -email EMAIL
                         deactivate a brokered Metabase account (mode broker)
  version                print version information
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "quickstart":
		return quickstart(args, stderr)
	case "demo":
		return demo(args, stderr)
	case "hash-password":
		return hashPassword(args, os.Stdin, stdout, stderr)
	case "metabase":
		return metabaseCommand(args, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "gatehouse %s (commit %s, %s, %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gatehouse: unknown command %q\n%s", cmd, usage)
	return 2
}

// metabaseCommand runs `gatehouse metabase deprovision`.
func metabaseCommand(args []string, stdout, stderr io.Writer) int {
	const use = "usage: gatehouse metabase deprovision -config FILE -route NAME -email EMAIL\n"
	if len(args) == 0 || args[0] != "deprovision" {
		fmt.Fprint(stderr, use)
		return 2
	}
	fs := flag.NewFlagSet("metabase deprovision", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `file`")
	route := fs.String("route", "", "the metabase route (mode broker)")
	email := fs.String("email", "", "the Metabase account's email")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *path == "" || *route == "" || *email == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, use)
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := app.DeprovisionMetabaseUser(ctx, cfg, *route, *email); err != nil {
		fmt.Fprintf(stderr, "gatehouse: deprovisioning %s: %v\n", *email, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: deactivated in Metabase (route %s)\n", *email, *route)
	return 0
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `file`")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usage: gatehouse %s -config FILE\n", name)
		return "", false
	}
	return *path, true
}

func check(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return 2
	}
	if _, err := config.Load(path); err != nil {
		fmt.Fprintln(stdout, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	o := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

func serve(args []string, stderr io.Writer) int {
	path, ok := configFlag("serve", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return runApp(cfg, path, stderr)
}

// runApp runs gatehouse until SIGTERM or SIGINT; SIGHUP reloads.
func runApp(cfg *config.Config, path string, stderr io.Writer) int {
	log := newLogger(cfg, stderr)
	// Libraries that log through slog's default (the built-in provider's
	// zitadel/oidc) write to the operator log too.
	slog.SetDefault(log.With("component", "library"))
	log.Info("starting gatehouse", "version", version, "commit", commit)
	a, err := app.New(cfg, app.Options{ConfigPath: path, Log: log})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading")
			_ = a.Reload(ctx) // logged by Reload
		}
	}()
	if err := a.Run(ctx); err != nil {
		log.Error("stopped with error", "err", err)
		return 1
	}
	return 0
}

func quickstart(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "`address` to serve on (loopback only)")
	adminAddr := fs.String("admin-addr", "127.0.0.1:9090", "`address` of the admin listener (metrics), loopback only, or off")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *adminAddr != "off" && !isLoopback(*adminAddr) {
		fmt.Fprintf(stderr, "gatehouse quickstart: refusing an admin listener on %s (use a loopback address or off)\n", *adminAddr)
		return 2
	}
	if !isLoopback(*addr) {
		fmt.Fprintf(stderr, "gatehouse quickstart: refusing to serve on %s: the quickstart is for this machine only (use a loopback address)\n", *addr)
		return 2
	}
	cfg, err := config.Parse("examples/quickstart.yaml", examples.Quickstart)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "gatehouse quickstart: starting the demo app: %v\n", err)
		return 1
	}
	origin := "http://" + *addr
	demoSrv := &http.Server{
		Handler:           demoapp.New(demoapp.Options{JWKSURL: origin + "/.well-known/gatehouse/jwks.json", Issuer: origin}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go demoSrv.Serve(ln)
	defer demoSrv.Close()
	cfg.Upstreams["demo"].Targets = []config.Target{{URL: config.URL{URL: &url.URL{Scheme: "http", Host: ln.Addr().String()}}, Weight: 1}}
	cfg.Listeners[0].Address = *addr
	cfg.Admin.Address = *adminAddr
	cfg.PublicURL = config.URL{URL: &url.URL{Scheme: "http", Host: *addr}}
	fmt.Fprintf(stderr, "gatehouse quickstart: open http://%s/ and sign in as alice / wonderland or bob / builder (demo app on %s)\n", *addr, ln.Addr())
	return runApp(cfg, "", stderr)
}

// hashPassword prints the bcrypt hash of the first line of stdin, for the
// built-in provider's users file. Reading stdin (not a flag) keeps the
// password out of shell history and the process list.
func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", idp.DefaultCost, "bcrypt `cost`")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gatehouse hash-password [-cost N] < password-file")
		return 2
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "gatehouse hash-password: reading stdin: %v\n", err)
		return 1
	}
	password := strings.TrimRight(line, "\r\n")
	hash, err := idp.HashPassword(password, *cost)
	if err != nil {
		fmt.Fprintf(stderr, "gatehouse hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, hash)
	return 0
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func demo(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8081", "`address` to serve the demo app on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	srv := &http.Server{Addr: *addr, Handler: demoapp.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Fprintf(stderr, "gatehouse demo app on http://%s/\n", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "gatehouse demo: %v\n", err)
		return 1
	}
	return 0
}
