package haproxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
	"github.com/gatehouse-proxy/gatehouse/internal/auth"
	"github.com/gatehouse-proxy/gatehouse/internal/idheader"
	"github.com/gatehouse-proxy/gatehouse/internal/listener"
	"github.com/gatehouse-proxy/gatehouse/internal/spop"
)

// MessageName is the spoe-message the agent answers; its arguments are
// listed in the package documentation. Other messages get an empty ACK, so
// HAProxy's rules see no verdict and refuse the request.
const MessageName = "check-auth"

// Names of the variables the agent sets, in scope txn (HAProxy prefixes
// them with the agent's var-prefix: txn.gh.ok). Every one must be listed in
// register-var-names or used in haproxy.cfg, or HAProxy drops it.
const (
	VarOK        = "ok"            // bool: the request may go on
	VarUser      = "user"          // the identity headers' values
	VarEmail     = "email"         //
	VarGroups    = "groups"        //
	VarAssertion = "assertion"     //
	VarRedirect  = "redirect"      // sign-in URL for a browser (status 302)
	VarStatus    = "status"        // int: the denial's status
	VarWWWAuth   = "www_auth"      // the WWW-Authenticate challenge of a 401
	VarSetCookie = "set_cookie"    // one Set-Cookie value for the response
	VarPath      = "path"          // the canonical path, when it differs
	VarReason    = "reason"        // why (kebab-case, as in the audit record)
	VarCookie    = "cookie"        // the Cookie header for the app, without gatehouse's cookies (may be empty)
	VarKeepAuthz = "keep_authz"    // bool: the route forwards the client's Authorization
	VarAuthz     = "authorization" // Authorization for the app: the user's access token (pass_access_token)
)

// AgentOptions configures an Agent.
type AgentOptions struct {
	// Route finds a request's route in the running configuration.
	// Required.
	Route Router
	// Trusted reports whether a peer may connect: HAProxy's addresses.
	// Connections from other peers are closed at once. Required.
	Trusted func(netip.Addr) bool
	// Audit receives one record per verdict. Required.
	Audit *audit.Logger
	// MaxFrameSize is the largest frame the agent accepts and announces;
	// the handshake lowers it to HAProxy's. Default: 16380, HAProxy's
	// default.
	MaxFrameSize uint32
	// Timeout bounds one verdict. Keep it below HAProxy's timeout
	// processing: a later ACK is dropped and the request refused anyway.
	// Default: 400ms.
	Timeout time.Duration
	// MaxInFlight bounds the verdicts being decided at once over all
	// connections; beyond it the agent stops reading NOTIFYs until one
	// finishes (HAProxy's timeout processing then refuses the waiting
	// requests). Default: 1024.
	MaxInFlight int
	// HelloTimeout bounds the wait for HAProxy's HELLO on a new
	// connection. Default: 5s.
	HelloTimeout time.Duration
	// Observe, when set, is called after each verdict with its decision
	// (audit.Decision*) and how long it took.
	Observe func(decision string, d time.Duration)
	// Log is the operator log. Default: discard.
	Log *slog.Logger
}

// Agent is gatehouse's SPOE agent (a SPOA): HAProxy's SPOE filter sends
// it a NOTIFY per request, and it answers with an ACK that sets the
// verdict variables. It speaks SPOP 2.0 with pipelining only, sends every
// ACK on the connection its NOTIFY came on, and sets FIN on every frame,
// which HAProxy 2.6's SPOE and the 3.1+ engine both require.
type Agent struct {
	opts AgentOptions
	sem  chan struct{} // one token per verdict in flight

	mu       sync.Mutex // guards the fields below
	ln       []net.Listener
	conns    map[net.Conn]struct{}
	closing  bool
	shutdown chan struct{} // closed by Shutdown

	wg sync.WaitGroup // connection handlers
}

// ErrAgentClosed is returned by Serve after Shutdown.
var ErrAgentClosed = errors.New("haproxy: agent closed")

// NewAgent validates opts and returns an Agent.
func NewAgent(opts AgentOptions) (*Agent, error) {
	if opts.Route == nil || opts.Trusted == nil || opts.Audit == nil {
		return nil, errors.New("haproxy: AgentOptions.Route, Trusted and Audit are required")
	}
	if opts.MaxFrameSize == 0 {
		opts.MaxFrameSize = spop.DefaultMaxFrameSize
	}
	if opts.MaxFrameSize < spop.MinFrameSize {
		return nil, errors.New("haproxy: MaxFrameSize below 256")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 400 * time.Millisecond
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 1024
	}
	if opts.HelloTimeout <= 0 {
		opts.HelloTimeout = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Agent{
		opts:     opts,
		sem:      make(chan struct{}, opts.MaxInFlight),
		conns:    map[net.Conn]struct{}{},
		shutdown: make(chan struct{}),
	}, nil
}

// Serve accepts HAProxy's connections on ln until Shutdown; it always
// returns a non-nil error, ErrAgentClosed after Shutdown.
func (a *Agent) Serve(ln net.Listener) error {
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		ln.Close()
		return ErrAgentClosed
	}
	a.ln = append(a.ln, ln)
	a.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if a.isClosing() {
				return ErrAgentClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors: wait rather than spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				a.opts.Log.Warn("SPOE agent accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !a.track(c) {
			c.Close()
			return ErrAgentClosed
		}
		go a.serveConn(c)
	}
}

func (a *Agent) isClosing() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closing
}

func (a *Agent) track(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return false
	}
	a.conns[c] = struct{}{}
	a.wg.Add(1)
	return true
}

func (a *Agent) untrack(c net.Conn) {
	a.mu.Lock()
	delete(a.conns, c)
	a.mu.Unlock()
	a.wg.Done()
}

// Shutdown stops accepting, lets the verdicts in flight finish, tells
// HAProxy on each connection that the agent is leaving (AGENT-DISCONNECT,
// status 0) and closes them. When ctx ends first, the connections are
// closed at once.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	if !a.closing {
		a.closing = true
		close(a.shutdown)
		for _, ln := range a.ln {
			ln.Close()
		}
		// Wake connection readers blocked waiting for a frame.
		for c := range a.conns {
			c.SetReadDeadline(time.Now())
		}
	}
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		for c := range a.conns {
			c.Close()
		}
		a.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// readBufferSize is the read buffer of a connection: pipelined NOTIFYs
// arrive several to a packet, and are read several to a syscall.
const readBufferSize = 32 << 10

// conn is one connection from HAProxy.
type conn struct {
	a       *Agent
	c       net.Conn
	w       *spop.Writer   // for goroutines: wakes the batch writer
	wq      *spop.Writer   // for the reader: queues until it flushes
	pending sync.WaitGroup // verdicts of this connection in flight
}

func (a *Agent) serveConn(c net.Conn) {
	defer a.untrack(c)
	defer c.Close()
	if peer := listener.AddrOf(c.RemoteAddr()); !a.opts.Trusted(peer) {
		a.opts.Log.Warn("SPOE agent refused a connection from an untrusted peer", "peer", peer)
		return
	}
	bw := newBatchWriter(c)
	defer bw.close() // before c.Close: what is queued goes out first
	cn := &conn{a: a, c: c,
		w:  spop.NewWriter(bw, int(a.opts.MaxFrameSize)),
		wq: spop.NewWriter(queued{bw}, int(a.opts.MaxFrameSize)),
	}
	br := bufio.NewReaderSize(c, readBufferSize)
	r := spop.NewReader(br, int(a.opts.MaxFrameSize))
	var f spop.Frame
	c.SetReadDeadline(time.Now().Add(a.opts.HelloTimeout))
	if err := r.ReadFrame(&f); err != nil {
		cn.fail(err, "reading HAPROXY-HELLO")
		return
	}
	hs, reply, err := spop.Negotiate(&f, a.opts.MaxFrameSize)
	if werr := cn.w.WriteFrame(&reply); werr != nil || err != nil {
		if err != nil {
			a.opts.Log.Warn("SPOE handshake refused", "peer", listener.AddrOf(c.RemoteAddr()), "err", err)
		}
		return
	}
	if hs.Healthcheck {
		return
	}
	r.SetMaxFrameSize(int(hs.MaxFrameSize))
	cn.w.SetMaxFrameSize(int(hs.MaxFrameSize))
	cn.wq.SetMaxFrameSize(int(hs.MaxFrameSize))
	c.SetReadDeadline(time.Time{})
	defer cn.pending.Wait()
	for {
		if !frameBuffered(br) {
			// The next read may block: send the ACKs decided so far.
			bw.flush()
		}
		if err := r.ReadFrame(&f); err != nil {
			if a.isClosing() {
				cn.pending.Wait()
				d := spop.AgentDisconnect(spop.StatusNormal, "agent shutting down")
				cn.w.WriteFrame(&d)
				return
			}
			cn.fail(err, "reading a frame")
			return
		}
		switch f.Type {
		case spop.FrameNotify:
			q, ok := query(&f)
			sid, fid := f.StreamID, f.FrameID
			// Most verdicts need no I/O (a session cookie opened from the
			// cache, policy, a cached assertion): they are decided here,
			// on the reader, which saves a goroutine hand-off each. The
			// others (a refresh due, a bearer token, a remote session
			// store) go to a goroutine of their own, so a slow provider
			// never holds up the NOTIFYs behind them. Without pipelining
			// HAProxy waits for each ACK anyway.
			if !hs.Pipelining {
				cn.answer(cn.wq, sid, fid, q, ok, false)
				continue
			}
			if cn.answer(cn.wq, sid, fid, q, ok, true) {
				continue
			}
			bw.flush() // the wait for a slot may be long
			select {
			case a.sem <- struct{}{}:
			case <-a.shutdown:
				cn.pending.Wait()
				d := spop.AgentDisconnect(spop.StatusNormal, "agent shutting down")
				cn.w.WriteFrame(&d)
				return
			}
			cn.pending.Add(1)
			go func() {
				defer func() { <-a.sem; cn.pending.Done() }()
				cn.answer(cn.w, sid, fid, q, ok, false)
			}()
		case spop.FrameHAProxyDisconnect:
			if d, err := spop.ParseDisconnect(&f); err == nil && d.Status != spop.StatusNormal {
				a.opts.Log.Warn("HAProxy closed the SPOE connection with an error", "status", d.Status, "message", d.Message)
			}
			cn.pending.Wait()
			d := spop.AgentDisconnect(spop.StatusNormal, "")
			cn.w.WriteFrame(&d)
			return
		default:
			cn.fail(spop.ErrUnexpectedFrame, "frame "+f.Type.String())
			return
		}
	}
}

// fail ends a connection after err: a clean end of the connection (HAProxy
// 3.x closes idle ones itself) silently, anything else with an
// AGENT-DISCONNECT that says why.
func (cn *conn) fail(err error, doing string) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		d := spop.AgentDisconnect(spop.StatusTimeout, "timeout")
		cn.w.WriteFrame(&d)
		return
	}
	cn.a.opts.Log.Warn("SPOE protocol error", "peer", listener.AddrOf(cn.c.RemoteAddr()), "while", doing, "err", err)
	d := spop.AgentDisconnect(spop.StatusOf(err), err.Error())
	cn.w.WriteFrame(&d)
}

// answer decides one NOTIFY and writes its ACK. With noWait it decides
// only if that needs no I/O, and reports false, having done nothing, when
// the verdict must be decided where waiting is fine.
func (cn *conn) answer(w *spop.Writer, sid, fid uint64, q *notifyQuery, ok, noWait bool) bool {
	a := cn.a
	start := time.Now()
	var actions []spop.Action
	rec := &audit.Record{Time: start, Via: audit.ViaSPOE}
	if ok {
		rec.RequestID = q.requestID
		var v *Verdict
		if noWait {
			// Nothing here waits, so no deadline is needed.
			if v = decide(context.Background(), a.opts.Route, &q.Query, rec, true); v.Wait {
				return false
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), a.opts.Timeout)
			v = decide(ctx, a.opts.Route, &q.Query, rec, false)
			cancel()
		}
		actions = v.actions()
	} else {
		// No usable check-auth message: a configuration mistake. The
		// empty ACK sets no verdict, so HAProxy refuses the request.
		if q != nil {
			rec.RequestID, rec.Method, rec.ClientIP = q.requestID, truncate(q.Method, 32), q.Source
			rec.Host, rec.Path = truncate(q.Host, 256), truncate(q.Path, 256)
		}
		rec.Decision, rec.Reason, rec.Status = audit.DecisionError, ReasonBadMessage, http.StatusUnauthorized
		a.opts.Log.Warn("SPOE NOTIFY without a usable check-auth message (method, host, path and src are required); the request is refused")
	}
	rec.Duration = time.Since(start)
	a.opts.Audit.Emit(rec)
	if a.opts.Observe != nil {
		a.opts.Observe(rec.Decision, rec.Duration)
	}
	ack := spop.Ack(sid, fid, actions)
	err := w.WriteFrame(&ack)
	if errors.Is(err, spop.ErrFrameTooBig) {
		// The identity does not fit in a frame (a huge groups list):
		// refuse rather than half-answer.
		a.opts.Log.Error("SPOE verdict too big for a frame; refusing the request", "max_frame_size", a.opts.MaxFrameSize)
		ack = spop.Ack(sid, fid, []spop.Action{
			spop.SetVar(spop.ScopeTxn, VarStatus, spop.Int64Value(http.StatusServiceUnavailable)),
			spop.SetVar(spop.ScopeTxn, VarReason, spop.StringValue("verdict-too-big")),
		})
		err = w.WriteFrame(&ack)
	}
	if err != nil {
		cn.c.Close() // the reader sees it and ends the connection
	}
	return true
}

// actions turns a verdict into the ACK's set-var actions, all in txn
// scope: never sess, whose variables outlive the request on a kept-alive
// or HTTP/2 connection and could authorize a later request whose own
// verdict timed out.
func (v *Verdict) actions() []spop.Action {
	acts := make([]spop.Action, 0, 8)
	set := func(name string, val spop.Value) {
		acts = append(acts, spop.SetVar(spop.ScopeTxn, name, val))
	}
	if v.Path != "" {
		set(VarPath, spop.StringValue(v.Path))
	}
	if v.Reason != "" {
		set(VarReason, spop.StringValue(v.Reason))
	}
	if v.Gate != nil {
		// One cookie fits HAProxy's add-header: the session cookie, which
		// is the only one a relayed check sets (login flows start on
		// /.gatehouse/login).
		name := v.Gate.SessionCookieName()
		for _, c := range v.SetCookies {
			if c.Name == name {
				set(VarSetCookie, spop.StringValue(c.String()))
			}
		}
	}
	if v.Allow {
		set(VarOK, spop.BoolValue(true))
		if v.CookieChanged {
			set(VarCookie, spop.StringValue(v.Cookie))
		}
		if v.KeepAuthorization {
			set(VarKeepAuthz, spop.BoolValue(true))
		}
		h := v.Gate.Headers()
		for _, hd := range v.Headers {
			switch hd.Name {
			case "Authorization":
				set(VarAuthz, spop.StringValue(hd.Value))
			case h.User:
				set(VarUser, spop.StringValue(hd.Value))
			case h.Email:
				set(VarEmail, spop.StringValue(hd.Value))
			case h.Groups:
				set(VarGroups, spop.StringValue(hd.Value))
			case h.Assertion:
				set(VarAssertion, spop.StringValue(hd.Value))
			}
		}
		return acts
	}
	set(VarStatus, spop.Int64Value(int64(v.Status)))
	if v.Location != "" {
		set(VarRedirect, spop.StringValue(v.Location))
	}
	if v.WWWAuthenticate != "" {
		set(VarWWWAuth, spop.StringValue(v.WWWAuthenticate))
	}
	return acts
}

// notifyQuery is a Query read from a NOTIFY, with the request ID HAProxy
// assigned (unique-id).
type notifyQuery struct {
	Query
	requestID string
}

// query reads the check-auth message of a NOTIFY. Values are copied: the
// frame's buffer is reused by the next read. It reports false when the
// NOTIFY has no check-auth message or the message lacks method, host,
// path or src.
func query(f *spop.Frame) (*notifyQuery, bool) {
	m, ok := f.Message(MessageName)
	if !ok {
		return nil, false
	}
	q := &notifyQuery{}
	text := func(name string) string {
		v, _ := m.Arg(name)
		s, _ := v.Text()
		return s
	}
	q.Method = text("method")
	q.Host = text("host")
	q.Path = text("path")
	q.RawQuery = text("query")
	if v, ok := m.Arg("src"); ok {
		q.Source, _ = v.Addr()
	}
	if v, ok := m.Arg("ssl"); ok {
		q.TLS, _ = v.Bool()
	}
	q.Authorization = text("authz")
	q.Cookie = text("cookie")
	q.Session = text("session")
	q.API = auth.IsAPI(q.Method, text("accept"), text("fetch"), text("xrw"))
	if id := text("reqid"); idheader.ValidRequestID(id) {
		q.requestID = id
	}
	if q.Method == "" || q.Host == "" || q.Path == "" || !q.Source.IsValid() {
		return q, false
	}
	return q, true
}

// frameBuffered reports whether br holds a whole frame, so the next
// ReadFrame will not block.
func frameBuffered(br *bufio.Reader) bool {
	if br.Buffered() < 4 {
		return false
	}
	b, _ := br.Peek(4)
	return int64(br.Buffered()) >= 4+int64(binary.BigEndian.Uint32(b))
}
