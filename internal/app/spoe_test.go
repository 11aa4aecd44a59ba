package app_test

// These tests drive gatehouse's SPOE agent with a Go SPOP client that
// speaks like HAProxy 2.6 (the frames of ../shared/haproxy-spop.md §2.2.9:
// HELLO with pipelining,async, stream-id 0 on the first stream, pipelined
// NOTIFYs). The tests against the real HAProxy are in haproxy_e2e_test.go.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/spop"
)

// spoeExtra turns on the agent and forward-auth for startIdentity, with
// loopback as the trusted front end.
const spoeExtra = `
spoe: {address: 127.0.0.1:0}
forward_auth: true
trusted_proxies: [127.0.0.1/32]
`

// spoeClient is one SPOP connection, as HAProxy opens it.
type spoeClient struct {
	t testing.TB
	c net.Conn
	r *spop.Reader
	w *spop.Writer
}

func dialSPOE(t testing.TB, addr string) *spoeClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc := &spoeClient{t: t, c: c, r: spop.NewReader(c, spop.DefaultMaxFrameSize), w: spop.NewWriter(c, spop.DefaultMaxFrameSize)}
	return sc
}

// send writes f, failing the test if it cannot. Call it from the test's
// goroutine only.
func (sc *spoeClient) send(f spop.Frame) {
	sc.t.Helper()
	if err := sc.w.WriteFrame(&f); err != nil {
		sc.t.Fatalf("writing %s: %v", f.Type, err)
	}
}

// read reads the next frame into f, waiting at most ioTimeout; the error
// is the caller's to judge (a closed connection may be what it wants).
func (sc *spoeClient) read(f *spop.Frame) error {
	sc.c.SetReadDeadline(time.Now().Add(ioTimeout))
	return sc.r.ReadFrame(f)
}

// hello sends HAPROXY-HELLO and returns the agent's answer.
func (sc *spoeClient) hello(healthcheck bool) *spop.Frame {
	sc.t.Helper()
	kv := []spop.KV{
		{Name: []byte("supported-versions"), Value: spop.StringValue("2.0")},
		{Name: []byte("max-frame-size"), Value: spop.Uint32Value(spop.DefaultMaxFrameSize)},
		{Name: []byte("capabilities"), Value: spop.StringValue("pipelining,async")},
		{Name: []byte("engine-id"), Value: spop.StringValue("bba9ad48-7d73-4852-9f1f-6907150be53b")},
	}
	if healthcheck {
		kv[2].Value = spop.StringValue("")
		kv = append(kv[:3], spop.KV{Name: []byte("healthcheck"), Value: spop.BoolValue(true)})
	}
	sc.send(spop.Frame{Type: spop.FrameHAProxyHello, Flags: spop.FlagFIN, KV: kv})
	var reply spop.Frame
	if err := sc.read(&reply); err != nil {
		sc.t.Fatalf("reading AGENT-HELLO: %v", err)
	}
	out, err := reply.Clone()
	if err != nil {
		sc.t.Fatal(err)
	}
	return out
}

// spoeRequest is one check-auth message's arguments.
type spoeRequest struct {
	method, host, path, query string
	src                       string
	ssl                       bool
	authz, session, accept    string
	cookie                    string
	reqid                     string
}

func (q spoeRequest) frame(sid, fid uint64) spop.Frame {
	arg := func(name string, v spop.Value) spop.Arg { return spop.Arg{Name: []byte(name), Value: v} }
	str := func(s string) spop.Value {
		if s == "" {
			return spop.NullValue() // HAProxy sends NULL for a missing header
		}
		return spop.StringValue(s)
	}
	src := q.src
	if src == "" {
		src = "192.0.2.10"
	}
	return spop.Frame{
		Type: spop.FrameNotify, Flags: spop.FlagFIN, StreamID: sid, FrameID: fid,
		Messages: []spop.Message{{Name: []byte("check-auth"), Args: []spop.Arg{
			arg("method", str(q.method)), arg("host", str(q.host)), arg("path", str(q.path)),
			arg("query", str(q.query)), arg("src", spop.IPValue(netip.MustParseAddr(src))),
			arg("ssl", spop.BoolValue(q.ssl)), arg("sni", spop.NullValue()), arg("alpn", spop.NullValue()),
			arg("authz", str(q.authz)), arg("session", str(q.session)), arg("cookie", str(q.cookie)), arg("reqid", str(q.reqid)),
			arg("accept", str(q.accept)), arg("fetch", spop.NullValue()), arg("xrw", spop.NullValue()),
		}}},
	}
}

// notify sends one NOTIFY and waits for its ACK, returning the variables
// it sets (all must be txn-scoped).
func (sc *spoeClient) notify(sid, fid uint64, q spoeRequest) map[string]spop.Value {
	sc.t.Helper()
	sc.send(q.frame(sid, fid))
	var ack spop.Frame
	if err := sc.read(&ack); err != nil {
		sc.t.Fatalf("reading ACK: %v", err)
	}
	if ack.Type != spop.FrameAck || ack.StreamID != sid || ack.FrameID != fid || ack.Flags&spop.FlagFIN == 0 {
		sc.t.Fatalf("got %s stream %d frame %d flags %x, want ACK %d/%d with FIN", ack.Type, ack.StreamID, ack.FrameID, ack.Flags, sid, fid)
	}
	return vars(sc.t, &ack)
}

func vars(t testing.TB, ack *spop.Frame) map[string]spop.Value {
	t.Helper()
	out := map[string]spop.Value{}
	for _, a := range ack.Actions {
		if a.Type != spop.ActionSetVar || a.Scope != spop.ScopeTxn {
			t.Fatalf("ACK action %v in scope %s, want set-var in txn only", a.Type, a.Scope)
		}
		c, err := (&spop.Frame{Type: spop.FrameAck, Actions: []spop.Action{a}}).Clone()
		if err != nil {
			t.Fatal(err)
		}
		out[a.Name] = c.Actions[0].Value
	}
	return out
}

func text(v spop.Value) string { s, _ := v.Text(); return s }

func TestSPOEVerdictIsTheProxysDecision(t *testing.T) {
	g := startIdentity(t, spoeExtra)
	host := strings.TrimPrefix(g.origin, "http://")
	alice := browser(t)
	g.signIn(t, alice, "/analytics", "alice", "wonderland")
	aliceSession := sessionCookie(t, alice, g.origin)
	bob := browser(t)
	g.signIn(t, bob, "/", "bob", "builder")
	bobSession := sessionCookie(t, bob, g.origin)

	sc := dialSPOE(t, g.app.Addr("spoe").String())
	hello := sc.hello(false)
	if hello.Type != spop.FrameAgentHello {
		t.Fatalf("answer to HELLO is %s", hello.Type)
	}
	if v, _ := hello.Lookup("capabilities"); text(v) != "pipelining" {
		t.Errorf("capabilities %q, want pipelining only", text(v))
	}

	// Stream-id 0, as HAProxy 2.6 sends for its first stream.
	got := sc.notify(0, 1, spoeRequest{method: "GET", host: host, path: "/analytics/q", query: "x=1", session: aliceSession, reqid: "spoe-alice-1"})
	if ok, _ := got["ok"].Bool(); !ok {
		t.Fatalf("alice on /analytics: no ok; vars %v", got)
	}
	if text(got["email"]) != "alice@example.test" || !strings.Contains(text(got["groups"]), "analysts") || text(got["user"]) == "" {
		t.Errorf("alice's identity variables: %v", got)
	}
	claims := verifyAssertion(t, g.origin, text(got["assertion"]))
	if claims["email"] != "alice@example.test" {
		t.Errorf("assertion email %v", claims["email"])
	}

	// With the whole Cookie header, the agent hands back the header for
	// the app without gatehouse's cookie, and Authorization is to go.
	got = sc.notify(0, 2, spoeRequest{method: "GET", host: host, path: "/analytics", cookie: "theme=dark; gh_session=" + aliceSession + "; lang=en", authz: "Basic eDp5"})
	if ok, _ := got["ok"].Bool(); !ok || text(got["cookie"]) != "theme=dark; lang=en" {
		t.Errorf("cookie variable %q (ok %v), want theme=dark; lang=en", text(got["cookie"]), got["ok"])
	}
	if _, keep := got["keep_authz"]; keep {
		t.Error("keep_authz set on a route without pass_authorization")
	}
	got = sc.notify(0, 3, spoeRequest{method: "GET", host: host, path: "/analytics", cookie: "gh_session=" + aliceSession})
	if v, ok := got["cookie"]; !ok || text(v) != "" {
		t.Errorf("only gatehouse's cookie: cookie variable %v, want an empty string", got["cookie"])
	}

	// Bob is signed in but not an analyst: 403, as the proxy answers.
	got = sc.notify(1, 1, spoeRequest{method: "GET", host: host, path: "/analytics", session: bobSession, reqid: "spoe-bob-1"})
	if ok, _ := got["ok"].Bool(); ok {
		t.Fatal("bob allowed on /analytics")
	}
	if s, _ := got["status"].Int64(); s != http.StatusForbidden {
		t.Errorf("bob: status %v, want 403", got["status"])
	}
	resp := fetch(t, bob, g.origin+"/analytics", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("the proxy answers bob %d", resp.StatusCode)
	}

	// Anonymous browser: sent to gatehouse's sign-in endpoint, which
	// starts the flow with its cookie on gatehouse's own listener.
	got = sc.notify(2, 1, spoeRequest{method: "GET", host: host, path: "/analytics", query: "tab=2", reqid: "spoe-anon-1"})
	if s, _ := got["status"].Int64(); s != http.StatusFound {
		t.Fatalf("anonymous: status %v, want 302", got["status"])
	}
	want := g.origin + "/.gatehouse/login?rd=" + url.QueryEscape("/analytics?tab=2")
	if text(got["redirect"]) != want {
		t.Errorf("redirect %q, want %q", text(got["redirect"]), want)
	}
	// Following it signs in and returns to the page.
	carol := browser(t)
	resp = fetch(t, carol, text(got["redirect"]), nil)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), g.origin+"/.gatehouse/idp/") {
		t.Fatalf("sign-in endpoint: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// A program without credentials: 401 with a challenge.
	got = sc.notify(3, 1, spoeRequest{method: "GET", host: host, path: "/analytics", accept: "application/json", reqid: "spoe-api-1"})
	if s, _ := got["status"].Int64(); s != http.StatusUnauthorized || !strings.HasPrefix(text(got["www_auth"]), "Bearer") {
		t.Errorf("API client: %v", got)
	}
	if _, ok := got["redirect"]; ok {
		t.Error("API client got a redirect")
	}

	// Public path: allowed without identity, no identity variables.
	got = sc.notify(4, 1, spoeRequest{method: "GET", host: host, path: "/public/logo.png", reqid: "spoe-public-1"})
	if ok, _ := got["ok"].Bool(); !ok || got["user"].Kind() != spop.KindNull {
		t.Errorf("public path: %v", got)
	}

	_, metrics := get(t, g.adminURL()+"/metrics")
	for _, d := range []string{"allow", "deny", "redirect"} {
		if !regexp.MustCompile(`gatehouse_spoe_verdict_seconds_count\{decision="` + d + `"\} [1-9]`).MatchString(metrics) {
			t.Errorf("metrics lack SPOE verdicts with decision %s", d)
		}
	}

	recs := recordsByID(g.gatehouse)
	for id, want := range map[string]string{"spoe-alice-1": "allow", "spoe-bob-1": "deny", "spoe-anon-1": "redirect", "spoe-api-1": "deny"} {
		r, ok := oneRecord(t, recs, id)
		if !ok {
			continue
		}
		if r.Decision != want || r.Via != "spoe" || r.ClientIP != "192.0.2.10" || r.Route == "" {
			t.Errorf("%s: audit record %+v, want decision %s via spoe from 192.0.2.10", id, r, want)
		}
	}
}

// TestSPOEPathTraversalCheckedOnCanonicalPath: the policy sees the
// canonical path, and the agent hands it to HAProxy (txn.gh.path) so the
// app gets that same path; undecodable paths are refused.
func TestSPOEPathTraversalCheckedOnCanonicalPath(t *testing.T) {
	g := startIdentity(t, spoeExtra)
	host := strings.TrimPrefix(g.origin, "http://")
	sc := dialSPOE(t, g.app.Addr("spoe").String())
	sc.hello(false)

	// /public/ is open; /public/../analytics is /analytics, which is not.
	got := sc.notify(1, 1, spoeRequest{method: "GET", host: host, path: "/public/../analytics", accept: "application/json"})
	if ok, _ := got["ok"].Bool(); ok {
		t.Fatal("/public/../analytics allowed anonymously")
	}
	if text(got["path"]) != "/analytics" {
		t.Errorf("path variable %q, want /analytics", text(got["path"]))
	}
	got = sc.notify(3, 1, spoeRequest{method: "GET", host: host, path: "/public//logo.png"})
	if ok, _ := got["ok"].Bool(); !ok || text(got["path"]) != "/public/logo.png" {
		t.Errorf("/public//logo.png: %v", got)
	}
	got = sc.notify(5, 1, spoeRequest{method: "GET", host: host, path: "/public/..%2Fanalytics"})
	if s, _ := got["status"].Int64(); s != http.StatusBadRequest {
		t.Errorf("encoded slash: %v, want status 400", got)
	}
	got = sc.notify(7, 1, spoeRequest{method: "GET", host: host, path: "/public/x"})
	if _, ok := got["path"]; ok {
		t.Errorf("canonical path echoed: %v", got)
	}
}

// TestSPOEPipelinedConcurrentNotifies: NOTIFYs written back to back on
// several connections each get their own ACK, with the right verdict.
func TestSPOEPipelinedConcurrentNotifies(t *testing.T) {
	g := startIdentity(t, spoeExtra)
	host := strings.TrimPrefix(g.origin, "http://")
	alice := browser(t)
	g.signIn(t, alice, "/analytics", "alice", "wonderland")
	session := sessionCookie(t, alice, g.origin)

	const conns, perConn = 4, 500
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		sc := dialSPOE(t, g.app.Addr("spoe").String())
		sc.hello(false)
		wg.Go(func() {
			// Write every NOTIFY without waiting (pipelining), then read
			// the ACKs, which may come in any order.
			go func() {
				for i := range perConn {
					q := spoeRequest{method: "GET", host: host, path: "/analytics", session: session}
					if i%2 == 1 {
						q = spoeRequest{method: "GET", host: host, path: "/analytics", accept: "application/json"}
					}
					f := q.frame(uint64(2*i+1), 1)
					if err := sc.w.WriteFrame(&f); err != nil {
						return
					}
				}
			}()
			seen := map[uint64]bool{}
			var ack spop.Frame
			sc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
			for len(seen) < perConn {
				if err := sc.r.ReadFrame(&ack); err != nil {
					errs <- fmt.Errorf("conn %d: after %d ACKs: %w", c, len(seen), err)
					return
				}
				i := (ack.StreamID - 1) / 2
				if ack.Type != spop.FrameAck || seen[i] || i >= perConn {
					errs <- fmt.Errorf("conn %d: unexpected %s %d", c, ack.Type, ack.StreamID)
					return
				}
				seen[i] = true
				ok := false
				for _, a := range ack.Actions {
					if a.Name == "ok" {
						ok, _ = a.Value.Bool()
					}
				}
				if ok != (i%2 == 0) {
					errs <- fmt.Errorf("conn %d: stream %d: ok=%v", c, ack.StreamID, ok)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSPOEHealthCheckAndDisconnect(t *testing.T) {
	g := startIdentity(t, spoeExtra)
	addr := g.app.Addr("spoe").String()

	// option spop-check: HELLO with healthcheck, AGENT-HELLO, close.
	sc := dialSPOE(t, addr)
	if f := sc.hello(true); f.Type != spop.FrameAgentHello {
		t.Fatalf("health check answered with %s", f.Type)
	}
	var f spop.Frame
	if err := sc.read(&f); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection stayed open after a health check (read %v, %v)", f.Type, err)
	}

	// HAPROXY-DISCONNECT is answered with AGENT-DISCONNECT status 0.
	sc = dialSPOE(t, addr)
	sc.hello(false)
	sc.send(spop.Frame{Type: spop.FrameHAProxyDisconnect, Flags: spop.FlagFIN, KV: []spop.KV{
		{Name: []byte("status-code"), Value: spop.Uint32Value(0)},
		{Name: []byte("message"), Value: spop.StringValue("normal")},
	}})
	if err := sc.read(&f); err != nil || f.Type != spop.FrameAgentDisconnect {
		t.Fatalf("after HAPROXY-DISCONNECT: %v %v", f.Type, err)
	}

	// A NOTIFY before HELLO is a protocol error: AGENT-DISCONNECT.
	sc = dialSPOE(t, addr)
	sc.send(spoeRequest{method: "GET", host: "x", path: "/"}.frame(1, 1))
	if err := sc.read(&f); err != nil || f.Type != spop.FrameAgentDisconnect {
		t.Fatalf("NOTIFY before HELLO: %v %v", f.Type, err)
	}
}

func TestSPOEWithoutCheckAuthMessageRefuses(t *testing.T) {
	g := startIdentity(t, spoeExtra)
	sc := dialSPOE(t, g.app.Addr("spoe").String())
	sc.hello(false)
	sc.send(spop.Frame{Type: spop.FrameNotify, Flags: spop.FlagFIN, StreamID: 1, FrameID: 1,
		Messages: []spop.Message{{Name: []byte("other"), Args: []spop.Arg{{Name: []byte("path"), Value: spop.StringValue("/")}}}}})
	var ack spop.Frame
	if err := sc.read(&ack); err != nil || ack.Type != spop.FrameAck {
		t.Fatalf("%v %v", ack.Type, err)
	}
	if len(ack.Actions) != 0 {
		t.Errorf("ACK sets %d variables for an unknown message; want none (HAProxy then refuses)", len(ack.Actions))
	}
}

// TestSPOESlowVerdictDoesNotHoldUpOthers: a verdict that waits on the
// network (here a bearer token whose issuer's JWKS endpoint hangs) runs on
// its own goroutine; the NOTIFYs pipelined behind it on the same connection
// are answered meanwhile.
func TestSPOESlowVerdictDoesNotHoldUpOthers(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	iss := newAPIIssuer(t)
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		http.Error(w, "gone", http.StatusServiceUnavailable)
	}))
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	g := startIdentity(t, fmt.Sprintf(`  bearer:
    - issuer: %s
      jwks_url: %s/keys
      audiences: [api://gatehouse]
%s`, iss.url, slow.URL, spoeExtra))
	host := strings.TrimPrefix(g.origin, "http://")
	alice := browser(t)
	g.signIn(t, alice, "/analytics", "alice", "wonderland")
	session := sessionCookie(t, alice, g.origin)

	sc := dialSPOE(t, g.app.Addr("spoe").String())
	sc.hello(false)
	sc.send(spoeRequest{method: "GET", host: host, path: "/analytics", authz: "Bearer " + iss.token(t, nil)}.frame(1, 1))
	sc.send(spoeRequest{method: "GET", host: host, path: "/analytics", session: session}.frame(3, 1))
	var ack spop.Frame
	if err := sc.read(&ack); err != nil {
		t.Fatal(err)
	}
	if ack.StreamID != 3 {
		t.Fatalf("first ACK is for stream %d: the session check waited behind the bearer check", ack.StreamID)
	}
	if ok, _ := vars(t, &ack)["ok"].Bool(); !ok {
		t.Error("alice's session refused")
	}
	once.Do(func() { close(release) })
	if err := sc.read(&ack); err != nil || ack.StreamID != 1 {
		t.Fatalf("second ACK: stream %d, %v", ack.StreamID, err)
	}
}

// TestSPOEShutdownDrainsVerdictsInFlight: a verdict still waiting when
// gatehouse shuts down is answered before the agent says goodbye, so
// HAProxy is not left without an answer it would have to time out.
func TestSPOEShutdownDrainsVerdictsInFlight(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	var once sync.Once
	iss := newAPIIssuer(t)
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		http.Error(w, "gone", http.StatusServiceUnavailable)
	}))
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	g := startIdentity(t, fmt.Sprintf(`  bearer:
    - issuer: %s
      jwks_url: %s/keys
      audiences: [api://gatehouse]
%s`, iss.url, slow.URL, spoeExtra))
	host := strings.TrimPrefix(g.origin, "http://")
	agent := g.app.Addr("spoe").String()

	sc := dialSPOE(t, agent)
	sc.hello(false)
	sc.send(spoeRequest{method: "GET", host: host, path: "/analytics", authz: "Bearer " + iss.token(t, nil)}.frame(1, 1))
	select {
	case <-arrived: // the verdict is in flight, waiting for the JWKS
	case <-time.After(ioTimeout):
		t.Fatal("the bearer check never fetched the JWKS")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- g.stop() }()
	// Shutdown has begun once the agent refuses new connections.
	waitFor(5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", agent, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if c, err := net.DialTimeout("tcp", agent, 100*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("the agent still accepts connections after shutdown began")
	}
	once.Do(func() { close(release) })

	var f spop.Frame
	if err := sc.read(&f); err != nil || f.Type != spop.FrameAck || f.StreamID != 1 {
		t.Fatalf("after shutdown began: %v %s stream %d, want the ACK for stream 1", err, f.Type, f.StreamID)
	}
	if err := sc.read(&f); err != nil || f.Type != spop.FrameAgentDisconnect {
		t.Fatalf("after the last ACK: %v %s, want AGENT-DISCONNECT", err, f.Type)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(stopTimeout):
		t.Fatal("gatehouse did not stop")
	}
}
