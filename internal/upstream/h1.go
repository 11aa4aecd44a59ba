package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// h1Transport is an HTTP/1.1 client for plain-http targets, made for a
// reverse proxy: the request is written and the response read on the
// caller's goroutine, over a pooled keep-alive connection. net/http's
// Transport hands every request to two goroutines per connection (a writer
// and a reader) and back through channels; on a loopback upstream that
// handoff costs more CPU than the proxying itself (docs/performance.md).
//
// What it keeps from net/http: request serialization (Request.Write) and
// response parsing (ReadResponse), so framing, chunking, trailers and
// header validation are the standard library's. What it does itself:
// connection pooling, cancellation, the response header timeout, a
// liveness check of pooled connections, and one retry of replayable
// requests on a fresh connection when a pooled one turns out to be dead.
//
// A request with a body is written by a separate goroutine while the
// response is read, so an upstream that answers early (413) never
// deadlocks against a large upload.
type h1Transport struct {
	dialer                *net.Dialer
	responseHeaderTimeout time.Duration
	idleTimeout           time.Duration
	maxIdle               int

	mu   sync.Mutex // guards idle
	idle map[string][]*h1Conn
}

// newH1Transport builds the transport for http targets; opts has its
// defaults applied.
func newH1Transport(opts Options) *h1Transport {
	return &h1Transport{
		dialer:                &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second},
		responseHeaderTimeout: opts.ResponseHeaderTimeout,
		idleTimeout:           opts.IdleConnTimeout,
		maxIdle:               opts.MaxIdleConnsPerTarget,
		idle:                  map[string][]*h1Conn{},
	}
}

type h1Conn struct {
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	key      string
	idleAt   time.Time
	reused   bool
	t        *h1Transport
	released atomic.Bool
}

// aLongTimeAgo is a deadline in the past, to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// aliveCheckAfter is the idle time after which a pooled connection is
// checked before use.
const aliveCheckAfter = time.Second

// testHookBeforeHeaderDeadline, when set by a test, runs after the request
// is written and before the response header deadline is set.
var testHookBeforeHeaderDeadline func()

var errStaleConn = errors.New("pooled upstream connection was closed by the target")

// RoundTrip sends req to req.URL.Host. The caller owns req.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		c, err := t.getConn(ctx, req.URL.Host, attempt > 0)
		if err != nil {
			return nil, err
		}
		resp, err := t.roundTrip(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		// A pooled connection the target had already closed fails before any
		// response byte: retry once on a fresh connection, but only when the
		// request can be sent again without risk (the rule net/http uses).
		if attempt == 0 && c.reused && errors.Is(err, errStaleConn) && replayable(req) && ctx.Err() == nil {
			continue
		}
		return nil, err
	}
}

func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false // Write consumed it
	}
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

func (t *h1Transport) roundTrip(ctx context.Context, c *h1Conn, req *http.Request) (*http.Response, error) {
	// Cancellation: interrupt any blocked read or write on the connection.
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.nc.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}

	hasBody := req.Body != nil && req.Body != http.NoBody
	var writeErr chan error
	if !hasBody {
		if err := req.Write(c.bw); err != nil {
			return fail(err)
		}
		if err := c.bw.Flush(); err != nil {
			if c.reused {
				return fail(fmt.Errorf("%w: %w", errStaleConn, err))
			}
			return fail(err)
		}
	} else {
		writeErr = make(chan error, 1)
		go func() {
			err := req.Write(c.bw)
			if err == nil {
				err = c.bw.Flush()
			}
			writeErr <- err
		}()
	}

	if testHookBeforeHeaderDeadline != nil {
		testHookBeforeHeaderDeadline()
	}
	if t.responseHeaderTimeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(t.responseHeaderTimeout))
		// If the request was cancelled meanwhile, the AfterFunc's poisoned
		// deadline may just have been overwritten by this one, and the read
		// below would wait for the whole header timeout: check. (ctx.Err is
		// set before the AfterFunc runs, so no cancellation slips between.)
		if ctx.Err() != nil {
			if writeErr != nil {
				c.nc.SetDeadline(aLongTimeAgo)
				<-writeErr
			}
			return fail(ctx.Err())
		}
	}
	resp, err := readFinalResponse(c.br, req)
	if err != nil {
		if writeErr != nil {
			// Stop the writer before reporting; its error explains less.
			c.nc.SetDeadline(aLongTimeAgo)
			<-writeErr
		}
		if c.reused && !isTimeout(err) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)) {
			return fail(fmt.Errorf("%w: %w", errStaleConn, err))
		}
		return fail(err)
	}
	if t.responseHeaderTimeout > 0 && !bodyBuffered(resp, c.br) {
		// The body is read after this; the header timeout must not cut it.
		// (A body already in the buffer needs no read from the socket, and
		// the next request on this connection sets its own deadline, so the
		// system call is skipped.)
		c.nc.SetReadDeadline(time.Time{})
	}
	if ctx.Err() != nil {
		// Cancelled while the deadline was being cleared.
		resp.Body.Close()
		return fail(ctx.Err())
	}

	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The connection now belongs to the upgraded protocol.
		c.nc.SetReadDeadline(time.Time{})
		stop()
		resp.Body = &upgradedConn{Conn: c.nc, br: c.br}
		return resp, nil
	}

	reusable := !resp.Close && !req.Close && resp.ProtoAtLeast(1, 1)
	body := &h1Body{c: c, rc: resp.Body, stop: stop, writeErr: writeErr, reusable: reusable}
	if resp.Body == http.NoBody {
		body.finish(true)
		return resp, nil
	}
	resp.Body = body
	return resp, nil
}

// bodyBuffered reports whether resp's whole body is already in br.
func bodyBuffered(resp *http.Response, br *bufio.Reader) bool {
	return resp.Body == http.NoBody || (resp.ContentLength >= 0 && int64(br.Buffered()) >= resp.ContentLength)
}

// readFinalResponse reads the response, skipping interim 1xx responses
// (100 Continue, 103 Early Hints) other than 101.
func readFinalResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for range 10 {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		resp.Body.Close()
	}
	return nil, errors.New("too many interim (1xx) responses")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isConnReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout() && (oe.Op == "read" || oe.Op == "write")
}

// getConn returns a live pooled connection to hostport, or dials one.
func (t *h1Transport) getConn(ctx context.Context, hostport string, fresh bool) (*h1Conn, error) {
	if !fresh {
		for {
			c := t.popIdle(hostport)
			if c == nil {
				break
			}
			// A target that closes keep-alive connections does so after
			// seconds of idleness; a connection idle for less than
			// aliveCheckAfter skips the check (and its system call), and
			// the stale-connection retry covers the rare exception.
			if time.Since(c.idleAt) < aliveCheckAfter || c.alive() {
				c.reused = true
				return c, nil
			}
			c.nc.Close()
		}
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	return &h1Conn{
		nc:  nc,
		br:  bufio.NewReaderSize(nc, 32<<10),
		bw:  bufio.NewWriterSize(nc, 32<<10),
		key: hostport,
		t:   t,
	}, nil
}

func (t *h1Transport) popIdle(key string) *h1Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	conns := t.idle[key]
	now := time.Now()
	for len(conns) > 0 {
		c := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		conns = conns[:len(conns)-1]
		if now.Sub(c.idleAt) < t.idleTimeout {
			t.idle[key] = conns
			return c
		}
		c.nc.Close() // idle too long: the target may close it any moment
	}
	t.idle[key] = conns
	return nil
}

func (t *h1Transport) putIdle(c *h1Conn) {
	c.idleAt = time.Now()
	c.reused = false
	c.released.Store(false)
	t.mu.Lock()
	conns := t.idle[c.key]
	// The pool is a stack (the warmest connection is reused first), so after
	// a burst the oldest connections sit at the bottom unused: close them
	// once they have been idle too long, rather than hold their sockets.
	var stale *h1Conn
	if len(conns) > 0 && c.idleAt.Sub(conns[0].idleAt) >= t.idleTimeout {
		stale = conns[0]
		conns = append(conns[:0], conns[1:]...)
	}
	if len(conns) >= t.maxIdle {
		t.idle[c.key] = conns
		t.mu.Unlock()
		c.nc.Close()
	} else {
		t.idle[c.key] = append(conns, c)
		t.mu.Unlock()
	}
	if stale != nil {
		stale.nc.Close()
	}
}

// CloseIdleConnections closes every pooled connection.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*h1Conn{}
	t.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			c.nc.Close()
		}
	}
}

// alive reports whether a pooled connection is still usable: the target
// has neither closed it nor sent unsolicited bytes. It costs one
// non-blocking read (see peekAlive).
func (c *h1Conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	return peekAlive(c.nc)
}

// h1Body is a response body that returns its connection to the pool when
// it has been read to the end, and closes it otherwise.
type h1Body struct {
	c        *h1Conn
	rc       io.ReadCloser
	stop     func() bool
	writeErr chan error
	reusable bool
	done     bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if errors.Is(err, io.EOF) {
		b.finish(true)
		return n, io.EOF
	}
	if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish releases the connection: back to the pool if the whole response
// was read, the request fully written, and the connection may be kept.
func (b *h1Body) finish(complete bool) {
	b.done = true
	if b.c.released.Swap(true) {
		return
	}
	cancelled := !b.stop() // the AfterFunc ran: the deadline is poisoned
	ok := complete && b.reusable && !cancelled
	if b.writeErr != nil {
		select {
		case err := <-b.writeErr:
			ok = ok && err == nil
		default:
			// The target answered before reading the whole request body:
			// stop the writer; the connection cannot be reused.
			ok = false
			b.c.nc.SetDeadline(aLongTimeAgo)
			<-b.writeErr
		}
	}
	if !ok {
		// Close the connection first: closing the body of an unfinished
		// response would otherwise read it to the end.
		b.c.nc.Close()
		b.rc.Close()
		return
	}
	b.c.t.putIdle(b.c)
}

// upgradedConn is the response body of a 101: the raw connection, with any
// bytes the target sent after its response still in br.
type upgradedConn struct {
	net.Conn
	br *bufio.Reader
}

func (u *upgradedConn) Read(p []byte) (int, error) { return u.br.Read(p) }
