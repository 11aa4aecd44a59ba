package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newTestUpstream(t *testing.T, target string, headerTimeout time.Duration) *Upstream {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	up, err := New(Options{Name: "t", Targets: []*url.URL{u}, ResponseHeaderTimeout: headerTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.CloseIdle)
	return up
}

func get(t *testing.T, up *Upstream, ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://upstream"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return up.RoundTrip(req)
}

// countingServer counts the TCP connections it accepts.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func TestPooledConnectionsAreReused(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	up := newTestUpstream(t, srv.URL, 0)
	for range 100 {
		resp, err := get(t, up, context.Background(), http.MethodGet, "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
		resp.Body.Close()
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("100 sequential requests used %d connections; want 1", n)
	}
}

func TestUnfinishedResponseClosesConnection(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 1<<20)))
	}))
	up := newTestUpstream(t, srv.URL, 0)
	for range 3 {
		resp, err := get(t, up, context.Background(), http.MethodGet, "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		io.ReadFull(resp.Body, buf)
		resp.Body.Close() // most of the body unread: the connection must not be reused
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("3 abandoned responses used %d connections; want 3", n)
	}
}

func TestConnectionCloseIsNotReused(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	}))
	up := newTestUpstream(t, srv.URL, 0)
	for range 3 {
		resp, err := get(t, up, context.Background(), http.MethodGet, "/", nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("used %d connections; want 3", n)
	}
}

// rawServer runs handle for every accepted connection.
func rawServer(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// readRequest consumes one request (headers and a Content-Length body).
func readRequest(br *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, req.Body)
	return req, nil
}

func TestStalePooledConnectionRetriedForGET(t *testing.T) {
	var accepted atomic.Int64
	target := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		accepted.Add(1)
		if _, err := readRequest(br); err != nil {
			return
		}
		// Keep-alive response, then close at once: the pooled connection
		// is dead by the time it is used again.
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	up := newTestUpstream(t, target, 0)
	for i := range 3 {
		resp, err := get(t, up, context.Background(), http.MethodGet, "/", nil)
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if n := accepted.Load(); n < 3 {
		t.Errorf("accepted %d connections; want a fresh one per request", n)
	}
}

func TestStalePooledConnectionNotRetriedForPOST(t *testing.T) {
	target := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	up := newTestUpstream(t, target, 0)
	resp, err := get(t, up, context.Background(), http.MethodGet, "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	time.Sleep(20 * time.Millisecond)
	_, err = get(t, up, context.Background(), http.MethodPost, "/", strings.NewReader("payload"))
	if err == nil {
		t.Fatal("POST on a dead pooled connection succeeded; it must fail rather than risk sending twice")
	}
}

func TestEarlyResponseToUploadDoesNotDeadlock(t *testing.T) {
	target := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		// Answer without reading the body, then wait for the client to give up.
		io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 3\r\n\r\nbig")
		io.Copy(io.Discard, io.LimitReader(br, 1<<10))
		time.Sleep(2 * time.Second)
	})
	up := newTestUpstream(t, target, 0)
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	defer pw.Close()
	done := make(chan error, 1)
	go func() {
		resp, err := get(t, up, context.Background(), http.MethodPost, "/upload", pr)
		if err == nil {
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				err = errors.New(resp.Status)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RoundTrip deadlocked on an upstream that answered before reading the body")
	}
}

func TestCancelInterruptsWaitForResponse(t *testing.T) {
	target := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequest(br)
		time.Sleep(3 * time.Second)
	})
	up := newTestUpstream(t, target, 0)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := get(t, up, ctx, http.MethodGet, "/", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancellation took %v", d)
	}
	if status, reason := Classify(ctx, err); status != 499 || reason != "client-gone" {
		t.Errorf("Classify = %d %s; want 499 client-gone", status, reason)
	}
}

func TestResponseHeaderTimeoutIs504(t *testing.T) {
	target := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequest(br)
		time.Sleep(3 * time.Second)
	})
	up := newTestUpstream(t, target, 150*time.Millisecond)
	_, err := get(t, up, context.Background(), http.MethodGet, "/", nil)
	if err == nil {
		t.Fatal("want a timeout")
	}
	if status, reason := Classify(context.Background(), err); status != http.StatusGatewayTimeout || reason != "upstream-timeout" {
		t.Errorf("Classify = %d %s; want 504 upstream-timeout (err %v)", status, reason, err)
	}
}

func TestDialFailureIs502(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	up := newTestUpstream(t, "http://"+addr, 0)
	_, err := get(t, up, context.Background(), http.MethodGet, "/", nil)
	var te *TargetError
	if !errors.As(err, &te) || te.Target.Name != "http://"+addr {
		t.Fatalf("err = %v; want a TargetError naming the target", err)
	}
	if status, reason := Classify(context.Background(), err); status != http.StatusBadGateway || reason != "upstream-unreachable" {
		t.Errorf("Classify = %d %s; want 502 upstream-unreachable", status, reason)
	}
}

func TestInterimResponsesSkipped(t *testing.T) {
	target := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequest(br)
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
			"HTTP/1.1 100 Continue\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
	})
	up := newTestUpstream(t, target, 0)
	resp, err := get(t, up, context.Background(), http.MethodGet, "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(b) != "final" {
		t.Errorf("got %d %q; want 200 final", resp.StatusCode, b)
	}
}

func TestSwitchingProtocolsHandsOverConnection(t *testing.T) {
	target := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequest(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(br, buf); err == nil {
			c.Write(buf) // echo
		}
	})
	up := newTestUpstream(t, target, 0)
	resp, err := get(t, up, context.Background(), http.MethodGet, "/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		t.Fatalf("status %d, body %T; want 101 with a ReadWriteCloser", resp.StatusCode, resp.Body)
	}
	defer rwc.Close()
	rwc.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(rwc, buf); err != nil || string(buf) != "ping" {
		t.Errorf("echo %q, %v", buf, err)
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello, world\n")
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	up, err := New(Options{Name: "b", Targets: []*url.URL{u}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodGet, "http://upstream/hello", nil)
		resp, err := up.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func TestIdleConnectionsExpire(t *testing.T) {
	tr := newH1Transport(Options{DialTimeout: time.Second, IdleConnTimeout: 50 * time.Millisecond, MaxIdleConnsPerTarget: 10})
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	u, _ := url.Parse(srv.URL)
	do := func() {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.URL.Host = u.Host
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	do()
	time.Sleep(80 * time.Millisecond) // longer than the idle timeout
	do()
	if n := conns.Load(); n != 2 {
		t.Errorf("a connection idle past the timeout was reused: %d connections; want 2", n)
	}
	tr.CloseIdleConnections()
}

// TestCancelJustBeforeHeaderDeadlineIsNotLost cancels the request between
// writing it and setting the response header deadline, the window in which
// the cancellation's poisoned deadline used to be overwritten, so that the
// read waited for the whole header timeout (seen in CI under load).
func TestCancelJustBeforeHeaderDeadlineIsNotLost(t *testing.T) {
	target := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequest(br)
		time.Sleep(5 * time.Second)
	})
	up := newTestUpstream(t, target, 4*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	testHookBeforeHeaderDeadline = func() {
		cancel()
		time.Sleep(50 * time.Millisecond) // let the AfterFunc poison the deadline first
	}
	t.Cleanup(func() { testHookBeforeHeaderDeadline = nil })
	start := time.Now()
	_, err := get(t, up, ctx, http.MethodGet, "/", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancellation took %v: the poisoned deadline was overwritten", d)
	}
}
