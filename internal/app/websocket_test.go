package app_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// wsEcho is an upstream that completes a WebSocket handshake (RFC 6455
// §4.2.2) and then echoes raw bytes: gatehouse tunnels bytes, so framing
// does not matter here.
func wsEcho(t *testing.T) string {
	t.Helper()
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "not a websocket", http.StatusBadRequest)
			return
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		brw.Flush()
		io.Copy(conn, brw)
	})).URL
}

// dialWebSocket opens a raw connection to gatehouse and sends an upgrade
// request for path with the given extra header lines; it returns the
// connection, a reader positioned after the response headers, and the
// response status.
func dialWebSocket(t *testing.T, addr, path, upgrade string, extra ...string) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	lines := append([]string{
		"GET " + path + " HTTP/1.1", "Host: " + addr, "Upgrade: " + upgrade, "Connection: Upgrade",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
	}, extra...)
	c.SetDeadline(time.Now().Add(ioTimeout))
	io.WriteString(c, strings.Join(lines, "\r\n")+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
	}
	c.SetDeadline(time.Time{})
	return c, br, resp.StatusCode
}

func startWebSocketGatehouse(t *testing.T, identityExtra ...string) (*identityGatehouse, string) {
	t.Helper()
	g := startBuiltinGatehouse(t, strings.Join(identityExtra, "\n"), fmt.Sprintf(`
upstreams:
  ws: {targets: [%s]}
routes:
  - name: ws
    path: /ws
    upstream: ws
    websocket: true
    policy: {allow: [{authenticated: true}]}
  - name: app
    path: /
    upstream: ws
    policy: {allow: [{authenticated: true}]}
`, wsEcho(t)))
	return g, strings.TrimPrefix(g.origin, "http://")
}

func TestWebSocketEchoClosedAtLogout(t *testing.T) {
	g, addr := startWebSocketGatehouse(t)
	c := browser(t)
	g.signIn(t, c, "/", "alice", "wonderland")
	cookie := "Cookie: gh_session=" + sessionCookie(t, c, g.origin)
	conn, br, status := dialWebSocket(t, addr, "/ws/echo", "websocket", cookie)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d, want 101", status)
	}
	io.WriteString(conn, "ping")
	buf := make([]byte, 4)
	conn.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}

	// Sign out in the browser: the open WebSocket closes within a second
	// or so (the session is checked every 500ms).
	req, _ := http.NewRequest(http.MethodPost, g.origin+"/.gatehouse/logout", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = br.ReadByte()
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the WebSocket stayed open after logout")
	}
	if err == nil {
		t.Fatal("read data after logout, want the connection closed")
	}
}

// TestWebSocketClosedAtCredentialExpiry: a tunnel lives no longer than the
// credential that opened it. A bearer token that expires 2 s after the
// upgrade (a session's absolute lifetime takes the same path, but is at
// least a minute) closes the connection within the watch interval after.
func TestWebSocketClosedAtCredentialExpiry(t *testing.T) {
	iss := newAPIIssuer(t)
	_, addr := startWebSocketGatehouse(t, fmt.Sprintf(`  bearer:
    - issuer: %s
      jwks_url: %s/keys
      audiences: [api://gatehouse]`, iss.url, iss.url))
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second) // exp is in whole seconds
	tok := iss.token(t, func(c map[string]any) { c["exp"] = exp.Unix() })
	conn, br, status := dialWebSocket(t, addr, "/ws/echo", "websocket", "Authorization: Bearer "+tok)
	if status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d, want 101", status)
	}
	io.WriteString(conn, "ping")
	buf := make([]byte, 4)
	conn.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := br.ReadByte()
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the WebSocket stayed open after its token expired")
	}
	if err == nil {
		t.Fatal("read data after expiry, want the connection closed")
	}
	if time.Now().Before(exp) {
		t.Error("closed before the token expired")
	}
}

func TestUpgradesRefusedUnlessAllowed(t *testing.T) {
	g, addr := startWebSocketGatehouse(t)
	c := browser(t)
	g.signIn(t, c, "/", "alice", "wonderland")
	cookie := "Cookie: gh_session=" + sessionCookie(t, c, g.origin)
	for _, tc := range []struct {
		name, path, upgrade, cookie string
		status                      int
	}{
		{"WebSocketOnARouteWithoutIt", "/other", "websocket", cookie, http.StatusBadRequest},
		{"H2CSmuggling", "/ws/echo", "h2c", cookie, http.StatusBadRequest},
		{"WebSocketWithoutSessionIs401NotARedirect", "/ws/echo", "websocket", "", http.StatusUnauthorized},
		{"UpgradeToGatehouseEndpoints", "/.gatehouse/me", "websocket", cookie, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.cookie != "" {
				extra = append(extra, tc.cookie)
			}
			if _, _, status := dialWebSocket(t, addr, tc.path, tc.upgrade, extra...); status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
		})
	}
}
