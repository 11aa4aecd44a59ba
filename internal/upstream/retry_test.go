package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestRetryableOnlyWhenSafe(t *testing.T) {
	dial := &net.OpError{Op: "dial", Err: errors.New("refused")}
	reset := &net.OpError{Op: "read", Err: errors.New("connection reset")}
	get, _ := http.NewRequest(http.MethodGet, "http://u/", nil)
	post, _ := http.NewRequest(http.MethodPost, "http://u/", strings.NewReader("x"))
	postTLS, _ := http.NewRequest(http.MethodPost, "https://u/", strings.NewReader("x"))
	emptyPost, _ := http.NewRequest(http.MethodPost, "http://u/", nil)
	tests := []struct {
		name string
		req  *http.Request
		err  error
		want bool
	}{
		{"DialFailureAnyMethod", post, dial, true},
		{"QueueFullAnyMethod", post, &TargetError{Err: ErrQueueFull}, true},
		{"DialFailureHTTPSBodyClosedByTransport", postTLS, dial, false},
		{"GETAfterReset", get, reset, true},
		{"POSTWithBodyNotRetriedAfterSend", post, reset, false},
		{"POSTWithoutBodyNotIdempotent", emptyPost, reset, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryable(tc.req, tc.err); got != tc.want {
				t.Errorf("retryable = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRetryBudgetCapsAmplification(t *testing.T) {
	var b retryBudget
	for range 100 {
		b.request()
	}
	retries := 0
	for range 100 {
		if b.retry() {
			retries++
		}
	}
	if retries != 20 {
		t.Errorf("%d retries allowed after 100 requests, want 20 (a fifth)", retries)
	}
	var quiet retryBudget
	quiet.request()
	n := 0
	for range 10 {
		if quiet.retry() {
			n++
		}
	}
	if n != retryMinimum {
		t.Errorf("%d retries allowed at low traffic, want the floor %d", n, retryMinimum)
	}
}

// TestFullOutageRetriesCapped sends requests to an upstream whose targets
// all refuse connections: each request fails, and the retries stay within
// the budget instead of tripling the attempts.
func TestFullOutageRetriesCapped(t *testing.T) {
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, "http://"+ln.Addr().String())
		ln.Close()
	}
	up := newPoolUpstream(t, addrs, Options{Retries: 2})
	for range 100 {
		req, _ := http.NewRequest(http.MethodGet, "http://upstream/", nil)
		if resp, err := up.RoundTrip(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			t.Fatal("request to a dead pool succeeded")
		}
	}
	if n := up.budget.retries.Load(); n > 20+retryMinimum {
		t.Errorf("%d retries for 100 requests during a full outage, want at most about a fifth", n)
	}
}

func newPoolUpstream(t *testing.T, targets []string, opts Options) *Upstream {
	t.Helper()
	for _, s := range targets {
		u, err := parseURL(s)
		if err != nil {
			t.Fatal(err)
		}
		opts.Targets = append(opts.Targets, u)
	}
	opts.Name = "t"
	up, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	return up
}

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }
