package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// errBodyReadTimeout is returned by a request body whose client stopped
// sending before server.body_read_timeout.
var errBodyReadTimeout = errors.New("request body read timed out")

// limitBodyRead puts a read deadline on the connection while the request
// body is read, and clears it at the end of the body, so a client that
// trickles a body (slow POST) cannot hold the connection forever while a
// long response (a 20-minute query) is never cut by it. http.Server's own
// ReadTimeout cannot do this: it would also cancel long-running requests.
func limitBodyRead(w http.ResponseWriter, r *http.Request, d time.Duration) *http.Request {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return r // the writer cannot set deadlines (a test recorder)
	}
	b := &deadlineBody{ReadCloser: r.Body, rc: rc}
	// ReverseProxy hands its ErrorHandler the outbound request, whose body
	// is wrapped: the context is how upstreamError finds this body.
	r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
	r.Body = b
	return r
}

type bodyKey struct{}

type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	done     atomic.Bool // the deadline was cleared or expired
	timedOut atomic.Bool // the client did not send the body in time
	eof      atomic.Bool // the whole body was read
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.eof.Load() {
		// net/http closes the inbound body once the response has started
		// (golang/go#40747); the transport's check for bytes beyond the
		// Content-Length must still see EOF, or it drops the upstream
		// connection and cuts the response.
		return 0, io.EOF
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	if err != nil && !b.done.Swap(true) {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Leave the expired deadline in place: net/http discards the
			// unread body before it writes the response, and must not wait
			// for the slow client to send it.
			b.timedOut.Store(true)
			err = errBodyReadTimeout
		} else {
			b.rc.SetReadDeadline(time.Time{})
		}
	}
	if err != nil && b.timedOut.Load() {
		err = errBodyReadTimeout
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	if !b.done.Swap(true) {
		b.rc.SetReadDeadline(time.Time{})
	}
	return b.ReadCloser.Close()
}

// bodyTimedOut reports whether r's body hit server.body_read_timeout.
func bodyTimedOut(r *http.Request) bool {
	b, ok := r.Context().Value(bodyKey{}).(*deadlineBody)
	return ok && b.timedOut.Load()
}
