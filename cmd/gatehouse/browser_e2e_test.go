//go:build e2e

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
)

// TestBrowserQuickstartSignIn signs in through the quickstart's login form in
// headless Chromium, as a person would, and checks that the demo app then sees
// alice's identity, that /analytics/ lets her in, and that /.gatehouse/me
// shows her. It runs the real binary (`gatehouse quickstart`) as a separate
// process, so flags, signal handling and the embedded configuration are all
// on the path.
//
// Run it with:
//
//	go test -tags e2e -run Browser -count=1 -v ./cmd/gatehouse
//
// It needs Debian's chromium package (`apt-get install -y chromium`); a
// missing browser fails the test rather than skipping it, so CI cannot pass
// without running it. On failure it saves a screenshot of the page in the
// test's artifact directory (go test -artifacts keeps it).
func TestBrowserQuickstartSignIn(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (%v): install it with `apt-get install -y chromium`", err)
	}
	// The whole test, build included, stays under a minute.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()

	base := startQuickstart(ctx, t)

	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium refuses to run as root with its sandbox on.
		chromedp.NoSandbox,
		// Keep Chromium from calling home; this machine has no internet.
		chromedp.Flag("disable-background-networking", true),
	)...)
	defer cancelAlloc() // waits for the browser to exit
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// step runs one part of the flow with its own bound. When it returns an
	// error or reports one, it saves a screenshot of the page; an error
	// returned stops the test.
	step := func(name string, d time.Duration, f func(ctx context.Context) error) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, d)
		defer cancel()
		failed := t.Failed()
		err := f(sctx)
		if err != nil || t.Failed() && !failed {
			screenshot(bctx, t, name)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	// The first action starts the browser, which lives as long as bctx: it
	// gets no timeout of its own beyond ctx.
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("opening %s/ in chromium: %v", base, err)
	}

	step("login form", 10*time.Second, func(ctx context.Context) error {
		if err := chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.CSS(`form input[name=username]`)),
			chromedp.WaitVisible(chromedp.CSS(`form input[name=password]`)),
		); err != nil {
			return fmt.Errorf("waiting for the built-in provider's login form: %w", err)
		}
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			return err
		}
		if !strings.HasPrefix(loc, base+"/") {
			return fmt.Errorf("login form at %s, want it under %s/", loc, base)
		}
		return nil
	})

	step("sign in", 15*time.Second, func(ctx context.Context) error {
		err := chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "alice"),
			chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "wonderland"),
			chromedp.Click(chromedp.CSS(`button[type=submit]`)),
			// The demo app's verified assertion, or the login page's error
			// (so a refused sign-in fails at once, not at the timeout).
			chromedp.WaitVisible(chromedp.CSS(`#assertion-ok, #login-error`)),
		)
		if err != nil {
			return fmt.Errorf("signing in as alice and waiting for the demo app's #assertion-ok: %w", err)
		}
		if msg, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`document.getElementById('login-error')?.textContent ?? ''`)); err != nil {
			return err
		} else if msg != "" {
			return fmt.Errorf("the login page refused alice / wonderland: %q", msg)
		}
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			return err
		}
		if loc != base+"/" {
			t.Errorf("after sign-in the browser is at %s, want %s/", loc, base)
		}
		return checkDemoPage(ctx, t, "/")
	})

	step("analytics", 10*time.Second, func(ctx context.Context) error {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/analytics/")); err != nil {
			return err
		}
		return checkDemoPage(ctx, t, "/analytics/")
	})

	// A browser asks for HTML, so /.gatehouse/me answers with its "Signed
	// in" page: a <dl> of <dt> names and <dd> values.
	step("me", 10*time.Second, func(ctx context.Context) error {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/.gatehouse/me")); err != nil {
			return err
		}
		title, err := chromedp.Run(ctx, chromedp.Title())
		if err != nil {
			return err
		}
		if title != "Signed in" {
			return fmt.Errorf("/.gatehouse/me: page title %q, want Signed in", title)
		}
		me, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries(
			Array.from(document.querySelectorAll('dt'), dt => [dt.textContent, dt.nextElementSibling.textContent]))`))
		if err != nil {
			return fmt.Errorf("/.gatehouse/me: reading the page: %w", err)
		}
		want := map[string]string{
			"User":   "alice",
			"Email":  "alice@example.test",
			"Groups": "admins, analysts",
		}
		got := make(map[string]string, len(want))
		for k := range want {
			if v, ok := me[k]; ok {
				got[k] = v
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("/.gatehouse/me (-want +got):\n%s\nwhole page: %q", diff, me)
		}
		return nil
	})
}

// checkDemoPage checks that the page in the browser is the demo app's report
// of a request for path made by alice: a verified assertion and her identity
// headers.
func checkDemoPage(ctx context.Context, t *testing.T, path string) error {
	t.Helper()
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		return err
	}
	if title != "gatehouse demo app" {
		return fmt.Errorf("%s: page title %q, want the demo app", path, title)
	}
	ok, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#assertion-ok`)))
	if err != nil {
		return fmt.Errorf("%s: reading #assertion-ok: %w", path, err)
	}
	if !strings.Contains(ok, "alice@example.test") {
		t.Errorf("%s: #assertion-ok = %q, want it to name alice@example.test", path, ok)
	}
	// The demo app lists every X-Gatehouse-* header it received in rows of
	// class "id": the name in <th>, the value in <td>.
	identity, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries(
		Array.from(document.querySelectorAll('tr.id'), r => [r.querySelector('th').textContent, r.querySelector('td').textContent]))`))
	if err != nil {
		return fmt.Errorf("%s: reading the identity table: %w", path, err)
	}
	want := map[string]string{
		"X-Gatehouse-User":   "alice",
		"X-Gatehouse-Email":  "alice@example.test",
		"X-Gatehouse-Groups": "admins,analysts",
	}
	got := make(map[string]string, len(want))
	for k := range want {
		if v, ok := identity[k]; ok {
			got[k] = v
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: identity table (-want +got):\n%s\nwhole table: %q", path, diff, identity)
	}
	// The request the demo app saw is the one the browser asked for.
	seen, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`Array.from(document.querySelectorAll('tr'), r => r.textContent).find(s => s.startsWith('Path')) || ''`))
	if err != nil {
		return err
	}
	if seen != "Path"+path {
		t.Errorf("demo app saw %q, want Path%s", seen, path)
	}
	return nil
}

// startQuickstart builds the gatehouse binary, runs `gatehouse quickstart` on
// a free loopback port, waits until it is healthy and returns its base URL.
// Cleanup stops it with SIGTERM, then SIGKILL after a bound.
func startQuickstart(ctx context.Context, t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "gatehouse")
	// go test puts its own GOROOT/bin first in PATH, so this is the same
	// toolchain; the build cache makes it a link step.
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	addr := freeLoopbackAddr(t)
	logPath := filepath.Join(dir, "gatehouse.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(bin, "quickstart", "-addr", addr, "-admin-addr", "off")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting gatehouse quickstart: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
				if waitErr != nil {
					t.Errorf("gatehouse (pid %d) did not exit cleanly on SIGTERM: %v", cmd.Process.Pid, waitErr)
				}
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Errorf("gatehouse (pid %d) ignored SIGTERM for 10s; killed", cmd.Process.Pid)
			}
		}
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("gatehouse output:\n%s", out)
		}
	})

	base := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.gatehouse/healthz", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-exited:
			t.Fatalf("gatehouse quickstart exited before it was healthy: %v", waitErr)
		case <-ctx.Done():
			t.Fatalf("gatehouse quickstart not healthy at %s: %v (last error: %v)", base, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// freeLoopbackAddr returns a loopback address with a port that was free a
// moment ago. The quickstart takes -addr, not a listener, so there is a small
// window in which another process could take the port.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// screenshot saves a PNG of the browser's page in the test's artifact
// directory, for the CI log. It is best effort.
func screenshot(bctx context.Context, t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	f := filepath.Join(t.ArtifactDir(), strings.ReplaceAll(name, " ", "-")+".png")
	if err := os.WriteFile(f, png, 0o644); err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", f)
}
