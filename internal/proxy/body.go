package proxy

import (
	"errors"
	"io"
	"net/http"
	"os"
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
func limitBodyRead(w http.ResponseWriter, r *http.Request, d time.Duration) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return // the writer cannot set deadlines (a test recorder)
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
}

type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = errBodyReadTimeout
		}
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	if !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return b.ReadCloser.Close()
}
