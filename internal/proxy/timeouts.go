package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gatehouse-proxy/gatehouse/internal/audit"
)

// Timeouts are a route's limits on the upstream's answer. Zero means no
// limit of that kind. The connection limits (dial, TLS handshake) belong to
// the upstream.
type Timeouts struct {
	// ResponseHeader bounds the wait for the response headers after the
	// request is sent (504 when it passes). It applies on top of the
	// upstream's own response header timeout.
	ResponseHeader time.Duration
	// Idle bounds the silence between two reads of the response body: a
	// stream that stops sending for this long is cut.
	Idle time.Duration
	// Total bounds the whole exchange, body included, from routing to the
	// last byte.
	Total time.Duration
}

// Reason codes of the route timeouts. A ResponseHeader timeout has no code
// of its own: timeoutTransport reports it as a deadline, which
// upstream.Classify answers with 504 upstream.ReasonTimeout
// ("upstream-timeout").
const (
	ReasonIdleTimeout  = "upstream-idle-timeout" // the response body stalled longer than Idle
	ReasonTotalTimeout = "route-timeout"         // the exchange outlasted Total
)

var (
	errHeaderTimeout = errors.New("route response header timeout")
	errIdleTimeout   = errors.New("route idle timeout")
)

// timeoutTransport enforces a route's ResponseHeader and Idle timeouts
// around the upstream round tripper.
type timeoutTransport struct {
	next   http.RoundTripper
	header time.Duration
	idle   time.Duration
}

func (t *timeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	ctx, cancel := context.WithCancelCause(parent)
	req = req.WithContext(ctx)
	var timer *time.Timer
	if t.header > 0 {
		timer = time.AfterFunc(t.header, func() { cancel(errHeaderTimeout) })
	}
	resp, err := t.next.RoundTrip(req)
	if timer != nil {
		timer.Stop()
	}
	if err != nil {
		cause := context.Cause(ctx)
		cancel(nil)
		if errors.Is(cause, errHeaderTimeout) {
			// A deadline, so that the 504 classification applies.
			return nil, fmt.Errorf("%w: no response headers within %v", context.DeadlineExceeded, t.header)
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The body is the tunnel, which ReverseProxy needs to see as an
		// io.ReadWriteCloser, so it is not wrapped; ctx ends with the
		// request.
		context.AfterFunc(parent, func() { cancel(nil) })
		return resp, nil
	}
	if t.idle <= 0 {
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	}
	b := &idleBody{ReadCloser: resp.Body, cancel: cancel, ctx: ctx, rec: audit.FromContext(ctx)}
	b.timer = time.AfterFunc(t.idle, func() { cancel(errIdleTimeout) })
	b.idle = t.idle
	resp.Body = b
	return resp, nil
}

// cancelBody releases the round trip's context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// idleBody cuts a response whose body stays silent longer than idle: the
// timer restarts at every read, and when it fires it cancels the round
// trip, which closes the upstream connection and fails the blocked read.
type idleBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
	ctx    context.Context
	rec    *audit.Record
	idle   time.Duration

	mu    sync.Mutex // guards timer
	timer *time.Timer
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && errors.Is(context.Cause(b.ctx), errIdleTimeout) {
		// Recorded on the reading (handler) goroutine, which owns the
		// record.
		if b.rec != nil {
			b.rec.Decision = audit.DecisionError
			b.rec.Reason = ReasonIdleTimeout
		}
		return n, fmt.Errorf("%w: the response body was silent for %v", context.DeadlineExceeded, b.idle)
	}
	if n > 0 {
		b.mu.Lock()
		b.timer.Reset(b.idle)
		b.mu.Unlock()
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.mu.Lock()
	b.timer.Stop()
	b.mu.Unlock()
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}
