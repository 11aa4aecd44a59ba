package app_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/config"
)

// textUpstream answers every request with body.
func textUpstream(t *testing.T, body string) string {
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	})).URL
}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestReloadKeepsOldConfigOnError(t *testing.T) {
	oldURL, newURL := textUpstream(t, "old"), textUpstream(t, "new")
	path := filepath.Join(t.TempDir(), "gatehouse.yaml")
	v1 := oneRoute(oldURL, "")
	v2 := fmt.Sprintf(`
listeners:
  - name: public
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
upstreams:
  app:
    targets: [%s]
  fresh:
    targets: [%s]
routes:
  - name: app
    upstream: app
    policy: {public: ["/"]}
  - name: fresh
    path: /fresh
    upstream: fresh
    policy: {public: ["/"]}
`, oldURL, newURL)
	writeFile(t, path, []byte(v1))
	g := startWith(t, "", startOptions{configPath: path})
	base := g.url("public")
	ctx := ctxWithTimeout(t, ioTimeout)

	if code, body := get(t, base+"/fresh"); code != 200 || body != "old" {
		t.Fatalf("before reload: /fresh = %d %q, want 200 old", code, body)
	}

	writeFile(t, path, []byte(v2))
	if err := g.app.Reload(ctx); err != nil {
		t.Fatalf("Reload of a valid file: %v", err)
	}
	if code, body := get(t, base+"/fresh"); code != 200 || body != "new" {
		t.Errorf("after reload: /fresh = %d %q, want 200 new", code, body)
	}

	broken := strings.Replace(v2, "upstream: fresh", "upstream: missing", 1) + "bogus_key: 1\n"
	writeFile(t, path, []byte(broken))
	err := g.app.Reload(ctx)
	if err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	var es config.Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Errorf("Reload error = %v, want the file's two problems as config.Errors", err)
	}
	for _, p := range []struct{ path, body string }{{"/fresh", "new"}, {"/", "old"}} {
		if code, body := get(t, base+p.path); code != 200 || body != p.body {
			t.Errorf("after a failed reload: %s = %d %q, want 200 %q", p.path, code, body, p.body)
		}
	}
	if log := g.log.String(); !strings.Contains(log, "keeping the running configuration") || !strings.Contains(log, "bogus_key") {
		t.Errorf("failed reload not logged with its positioned problems:\n%s", log)
	}

	// A file that parses but cannot be built (an unresolvable secret) is
	// refused the same way.
	unresolvable := strings.Replace(v2, "admin:\n  address: 127.0.0.1:0\n",
		"admin:\n  address: 127.0.0.1:0\n  token: env:GH_TEST_UNSET_SECRET_FOR_RELOAD\n", 1)
	writeFile(t, path, []byte(unresolvable))
	if err := g.app.Reload(ctx); err == nil {
		t.Error("Reload with an unresolvable secret succeeded")
	}
	if code, body := get(t, base+"/fresh"); code != 200 || body != "new" {
		t.Errorf("after a failed build: /fresh = %d %q, want 200 new", code, body)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	entered := make(chan struct{}, 1)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		// The upstream is slow: it answers 500ms after the request.
		select {
		case <-time.After(500 * time.Millisecond):
			io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	}))
	g := start(t, oneRoute(up.URL, ""))

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := client().Get(g.url("public") + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b), err}
	}()
	receive(t, entered, "the request to reach the upstream")
	stopped := make(chan error, 1)
	go func() { stopped <- g.stop() }()

	r := receive(t, res, "the in-flight response")
	if r.err != nil || r.code != 200 || r.body != "done" {
		t.Errorf("in-flight request during shutdown: %d %q %v, want 200 done", r.code, r.body, r.err)
	}
	if err := receive(t, stopped, "Run to return"); err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
	recs := g.records()
	if len(recs) != 1 || recs[0].Status != 200 {
		t.Errorf("audit records after shutdown: %+v, want one with status 200", recs)
	}
	// Nothing listens any more.
	c := &http.Client{Timeout: time.Second}
	if resp, err := c.Get(g.url("public") + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("public listener still answers after Run returned: %d", resp.StatusCode)
	}
}
