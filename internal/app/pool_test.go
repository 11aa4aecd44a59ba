package app_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
			_, body := get(t, g.url("public")+"/x")
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
	// The admin listener shows it: the status page and the metrics.
	_, status := get(t, g.adminURL()+"/.gatehouse/status")
	if !strings.Contains(status, `"target": "`+b+`"`) || !strings.Contains(status, `"last_status": 503`) {
		t.Errorf("status page does not show b down:\n%s", status)
	}
	_, metrics := get(t, g.adminURL()+"/metrics")
	if !strings.Contains(metrics, `gatehouse_upstream_target_up{target="`+b+`",upstream="app"} 0`) ||
		!strings.Contains(metrics, `gatehouse_upstream_target_up{target="`+a+`",upstream="app"} 1`) {
		t.Errorf("metrics lack the targets' health")
	}
	// b recovers: it gets traffic again.
	bHealth.Store(200)
	deadline = time.Now().Add(5 * time.Second)
	for seen["b"] == 0 && time.Now().Before(deadline) {
		_, body := get(t, g.url("public")+"/x")
		seen[body]++
		time.Sleep(10 * time.Millisecond)
	}
	if seen["b"] == 0 {
		t.Error("b never got traffic back after passing its health check")
	}
}

func TestDeadTargetRetriedThenEjected(t *testing.T) {
	var h atomic.Int32
	h.Store(200)
	live := namedTarget(t, "live", &h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there: dialing fails
	for _, tc := range []struct {
		name     string
		pool     string
		failures int
	}{
		// A connection failure is retried on the other target.
		{"retried", "    eject_after: 1\n    eject_for: 1m", 0},
		// Without retries the one request that hits the dead target fails;
		// then it is ejected for a minute.
		{"ejected", "    retries: 0\n    eject_after: 1\n    eject_for: 1m", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := start(t, poolConfig([]string{live, dead}, tc.pool))
			failures := 0
			for range 20 {
				status, body := get(t, g.url("public")+"/x")
				switch {
				case status == http.StatusBadGateway:
					failures++
				case status != http.StatusOK || body != "live":
					t.Fatalf("status %d body %q", status, body)
				}
			}
			if failures != tc.failures {
				t.Errorf("%d requests failed, want %d", failures, tc.failures)
			}
		})
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

// TestKillOneOfThreeUnderLoad kills one of three targets in the middle of
// 20,000 GETs from 16 concurrent clients, then brings it back: no request
// fails (a broken or refused connection is retried on another target and
// the dead one is ejected), and the target gets traffic again after its
// slow start.
func TestKillOneOfThreeUnderLoad(t *testing.T) {
	type target struct {
		addr string
		srv  *http.Server
		hits atomic.Int64
	}
	var targets [3]*target
	serve := func(tg *target, ln net.Listener) {
		tg.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tg.hits.Add(1)
			io.WriteString(w, "ok")
		})}
		go tg.srv.Serve(ln)
	}
	var urls []string
	for i := range targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		targets[i] = &target{addr: ln.Addr().String()}
		serve(targets[i], ln)
		urls = append(urls, "http://"+targets[i].addr)
	}
	t.Cleanup(func() {
		for _, tg := range targets {
			tg.srv.Close()
		}
	})
	g := start(t, poolConfig(urls, `    balance: least_conn
    eject_after: 1
    eject_for: 1s
    slow_start: 1s`))

	const total = 20000
	killAt, reviveAt := int64(total/3), int64(2*total/3)
	victim := targets[2]
	var hitsAtRevive atomic.Int64
	phase := make(chan struct{}) // closed once the victim is back
	failed, firstErr := load(g.url("public")+"/x", total, 16, func(n int64) {
		switch n {
		case killAt:
			victim.srv.Close() // closes the listener and every connection
		case reviveAt:
			defer close(phase)
			ln, err := net.Listen("tcp", victim.addr)
			if err != nil {
				t.Errorf("reviving the target: %v", err)
				return
			}
			hitsAtRevive.Store(victim.hits.Load())
			serve(victim, ln)
		}
	})
	if failed != 0 {
		t.Fatalf("%d of %d requests failed (first: %v)", failed, total, firstErr)
	}
	<-phase
	// The revived target serves again once its ejection and slow start are
	// over: bounded wait.
	deadline := time.Now().Add(10 * time.Second)
	for victim.hits.Load() == hitsAtRevive.Load() && time.Now().Before(deadline) {
		if status, _ := get(t, g.url("public")+"/x"); status != http.StatusOK {
			t.Fatalf("status %d after the target came back", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if victim.hits.Load() == hitsAtRevive.Load() {
		t.Error("the revived target got no traffic")
	}
	t.Logf("hits: %d %d %d", targets[0].hits.Load(), targets[1].hits.Load(), victim.hits.Load())
}

// TestReloadUnderLoadFailsNothing reloads the configuration five times,
// changing the pool each time, while 8 clients send 5,000 requests: every
// request succeeds; the in-flight ones finish on the runtime they started
// on.
func TestReloadUnderLoadFailsNothing(t *testing.T) {
	var h atomic.Int32
	h.Store(200)
	a, b := namedTarget(t, "a", &h), namedTarget(t, "b", &h)
	path := filepath.Join(t.TempDir(), "gatehouse.yaml")
	configs := []string{
		poolConfig([]string{a, b}, "    balance: least_conn"),
		poolConfig([]string{b}, "    balance: round_robin"),
		poolConfig([]string{a, b}, "    balance: random_two\n    health_check: {path: /api/health, interval: 100ms, timeout: 100ms}"),
	}
	if err := os.WriteFile(path, []byte(configs[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startWith(t, "", startOptions{configPath: path})
	const total = 5000
	var mu sync.Mutex // guards reloads; one reload at a time
	var reloads int
	failed, firstErr := load(g.url("public")+"/x", total, 8, func(n int64) {
		if n%(total/6) != 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if reloads == 5 {
			return
		}
		reloads++
		if err := os.WriteFile(path, []byte(configs[reloads%len(configs)]), 0o600); err != nil {
			t.Error(err)
		}
		if err := g.app.Reload(context.Background()); err != nil {
			t.Errorf("reload %d: %v", reloads, err)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if reloads != 5 {
		t.Errorf("%d reloads, want 5", reloads)
	}
	if failed != 0 {
		t.Fatalf("%d of %d requests failed across five reloads (first: %v)", failed, total, firstErr)
	}
}

// load sends total GETs to url from workers concurrent clients and returns
// how many failed (an error or a status other than 200) and the first
// failure. Before request n (counting from 1) it calls step(n), in the
// worker that sends it, so a test can act at a given point of the load
// (every call runs before its request; calls may overlap across workers,
// but a test acting at distinct n sees each once).
func load(url string, total, workers int, step func(n int64)) (failed int64, first error) {
	var next, nfailed atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		nfailed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer c.CloseIdleConnections()
	done := make(chan struct{}, workers)
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				n := next.Add(1)
				if n > int64(total) {
					return
				}
				if step != nil {
					step(n)
				}
				resp, err := c.Get(url)
				if err != nil {
					fail(err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Errorf("status %d", resp.StatusCode))
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	if v := firstErr.Load(); v != nil {
		first = v.(error)
	}
	return nfailed.Load(), first
}

// TestTargetWeightsShareTraffic: {url, weight} targets reach the pool.
// Round robin shares exactly 3:1 (it is smooth). least_conn compares
// (in-flight+1)/weight, as HAProxy's leastconn does, so one request at a
// time always finds the weight-3 target the least loaded.
func TestTargetWeightsShareTraffic(t *testing.T) {
	want := map[string][2]int{"round_robin": {300, 100}, "least_conn": {400, 0}}
	for _, balance := range []string{"round_robin", "least_conn"} {
		t.Run(balance, func(t *testing.T) {
			var ok atomic.Int32
			ok.Store(200)
			a, b := namedTarget(t, "a", &ok), namedTarget(t, "b", &ok)
			g := start(t, poolConfig([]string{"{url: " + a + ", weight: 3}", b}, "    balance: "+balance))
			counts := map[string]int{}
			c := client()
			for range 400 {
				resp, err := c.Get(g.url("public") + "/")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				counts[string(body)]++
			}
			if w := want[balance]; counts["a"] != w[0] || counts["b"] != w[1] {
				t.Errorf("weights 3:1 gave a=%d b=%d, want %d and %d", counts["a"], counts["b"], w[0], w[1])
			}
		})
	}
}

// TestHangingTargetAvoided: a target that accepts connections and never
// answers costs a request its response_header_timeout once, then the GET
// goes to another target (a retry), and after eject_after such failures
// the target gets no more traffic.
func TestHangingTargetAvoided(t *testing.T) {
	var ok atomic.Int32
	ok.Store(200)
	good := namedTarget(t, "good", &ok)
	release := make(chan struct{})
	hang := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release) })
	g := start(t, poolConfig([]string{hang.URL, good}, `    response_header_timeout: 300ms
    eject_after: 2
    eject_for: 1m`))
	c := client()
	for i := range 20 {
		resp, err := c.Get(g.url("public") + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "good" {
			t.Fatalf("request %d: %d %q, want 200 from the answering target", i, resp.StatusCode, body)
		}
	}
	_, st := get(t, g.adminURL()+"/.gatehouse/status")
	if !strings.Contains(st, `"ejected_until"`) {
		t.Errorf("the hanging target is not ejected in /.gatehouse/status:\n%s", st)
	}
}

// TestHashOnClientIPSticksPerClient: with balance hash on client_ip, each
// client (its address from the trusted front end's X-Forwarded-For) always
// reaches the same target, and the clients spread over both targets.
func TestHashOnClientIPSticksPerClient(t *testing.T) {
	var ok atomic.Int32
	ok.Store(200)
	a, b := namedTarget(t, "a", &ok), namedTarget(t, "b", &ok)
	g := start(t, "trusted_proxies: [127.0.0.1/32]\n"+poolConfig([]string{a, b}, "    balance: hash\n    hash_on: client_ip"))
	c := client()
	get := func(clientIP string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, g.url("public")+"/", nil)
		req.Header.Set("X-Forwarded-For", clientIP)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	perTarget := map[string]int{}
	for i := range 40 {
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		if i%4 == 3 {
			ip = fmt.Sprintf("2001:db8::%x", i+1)
		}
		first := get(ip)
		for range 4 {
			if got := get(ip); got != first {
				t.Fatalf("client %s went to %s, then to %s", ip, first, got)
			}
		}
		perTarget[first]++
	}
	if perTarget["a"] == 0 || perTarget["b"] == 0 {
		t.Errorf("40 clients all went to one target: %v", perTarget)
	}
}
