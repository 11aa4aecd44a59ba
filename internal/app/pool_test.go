package app_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// poolConfig is gatehouse in front of one upstream with the given targets
// and pool settings.
func poolConfig(targets []string, pool string) string {
	return fmt.Sprintf(`
listeners: [{name: public, address: "127.0.0.1:0"}]
admin: {address: 127.0.0.1:0}
upstreams:
  app:
    targets: [%s]
%s
routes:
  - name: app
    upstream: app
    policy: {public: ["/"]}
`, strings.Join(targets, ", "), pool)
}

// namedTarget answers every request with its name; /api/health answers
// health() (200 or 503).
func namedTarget(t *testing.T, name string, health *atomic.Int32) string {
	t.Helper()
	s := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/health" {
			w.WriteHeader(int(health.Load()))
			return
		}
		io.WriteString(w, name)
	}))
	return s.URL
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTargetFailingHealthCheckIsSkipped(t *testing.T) {
	var aHealth, bHealth atomic.Int32
	aHealth.Store(200)
	bHealth.Store(503) // like a Metabase that is still starting
	a := namedTarget(t, "a", &aHealth)
	b := namedTarget(t, "b", &bHealth)
	g := start(t, poolConfig([]string{a, b}, `    balance: least_conn
    health_check: {path: /api/health, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}`))
	// Bounded wait for the first round of checks to take b out.
	seen := map[string]int{}
	deadline := time.Now().Add(5 * time.Second)
	for {
		clear(seen)
		for range 10 {
			_, body := getBody(t, g.url("public")+"/x")
			seen[body]++
		}
		if seen["b"] == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if seen["b"] != 0 || seen["a"] != 10 {
		t.Fatalf("with b failing its health check: %v, want every request on a", seen)
	}
	// b recovers: it gets traffic again.
	bHealth.Store(200)
	deadline = time.Now().Add(5 * time.Second)
	for seen["b"] == 0 && time.Now().Before(deadline) {
		_, body := getBody(t, g.url("public")+"/x")
		seen[body]++
		time.Sleep(10 * time.Millisecond)
	}
	if seen["b"] == 0 {
		t.Error("b never got traffic back after passing its health check")
	}
}

func TestDeadTargetEjectedAfterFailures(t *testing.T) {
	var h atomic.Int32
	h.Store(200)
	live := namedTarget(t, "live", &h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there: dialing fails
	g := start(t, poolConfig([]string{live, dead}, `    eject_after: 1
    eject_for: 1m`))
	failures := 0
	for range 20 {
		status, body := getBody(t, g.url("public")+"/x")
		switch {
		case status == http.StatusBadGateway:
			failures++
		case status != http.StatusOK || body != "live":
			t.Fatalf("status %d body %q", status, body)
		}
	}
	// Round robin sends the first or second request to the dead target,
	// which is then ejected for a minute.
	if failures != 1 {
		t.Errorf("%d requests failed, want exactly 1 before the dead target is ejected", failures)
	}
}

func TestConnectionCapAnswers503WithRetryAfter(t *testing.T) {
	s, target := newStreamUpstream(t)
	g := start(t, poolConfig([]string{target}, `    max_conns_per_target: 1`))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := make(chan struct{})
	go func() {
		defer close(held)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url("public")+"/hold", nil)
		resp, err := client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	receive(t, s.entered, "the first request to reach the target")
	resp, err := client().Get(g.url("public") + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request over the cap: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	cancel() // the held request ends; its slot is released
	<-held
	found := false
	for _, r := range g.records() {
		if r.Reason == "queue-full" && r.Status == 503 {
			found = true
		}
	}
	if !found {
		t.Error("no audit record with reason queue-full")
	}
}
