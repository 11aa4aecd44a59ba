package app_test

import (
	"bufio"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"
)

// timingUpstream answers by the last path segment:
//
//	slow-headers  headers after 300 ms
//	stall         event "one", 500 ms of silence, event "two"
//	ticks         ?n= events, ?every= apart
func timingUpstream(t *testing.T) string {
	t.Helper()
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		sleep := func(d time.Duration) bool {
			select {
			case <-time.After(d):
				return true
			case <-r.Context().Done():
				return false
			}
		}
		event := func(s string) {
			fmt.Fprintf(w, "data: %s\n\n", s)
			rc.Flush()
		}
		switch path.Base(r.URL.Path) {
		case "slow-headers":
			if sleep(300 * time.Millisecond) {
				fmt.Fprint(w, "late")
			}
		case "stall":
			w.Header().Set("Content-Type", "text/event-stream")
			event("one")
			if sleep(500 * time.Millisecond) {
				event("two")
			}
		case "ticks":
			w.Header().Set("Content-Type", "text/event-stream")
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			every, _ := time.ParseDuration(r.URL.Query().Get("every"))
			for i := range n {
				event(strconv.Itoa(i))
				if i < n-1 && !sleep(every) {
					return
				}
			}
		}
	})).URL
}

// events reads server-sent events until the stream ends and returns their
// data.
func events(t *testing.T, url string) []string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []string
	br := bufio.NewReader(resp.Body)
	for {
		ev, err := readEvent(br)
		if ev != "" {
			out = append(out, ev)
		}
		if err != nil {
			return out
		}
	}
}

func TestRouteTimeouts(t *testing.T) {
	up := timingUpstream(t)
	g := start(t, fmt.Sprintf(`
listeners: [{name: public, address: "127.0.0.1:0"}]
admin: {address: 127.0.0.1:0}
upstreams:
  app:
    targets: [%[1]s]
    response_header_timeout: 5s # longer than slow-headers: a 504 there is the route's
  short:
    targets: [%[1]s]
    response_header_timeout: 100ms # the upstream's own; bodies are not bound by it
routes:
  - name: strict
    path: /strict
    upstream: app
    timeouts: {response_header: 100ms, idle: 150ms, total: 600ms}
    policy: {public: ["/"]}
  - name: streaming
    path: /streaming
    upstream: short
    timeouts: {idle: 400ms}
    policy: {public: ["/"]}
  - name: patient
    path: /patient
    upstream: app
    policy: {public: ["/"]}
`, up))
	base := g.url("public")

	t.Run("ResponseHeaderTimeoutIs504", func(t *testing.T) {
		if status, _ := get(t, base+"/strict/slow-headers"); status != http.StatusGatewayTimeout {
			t.Errorf("status %d, want 504", status)
		}
		if status, body := get(t, base+"/patient/slow-headers"); status != http.StatusOK || body != "late" {
			t.Errorf("without the route timeout: %d %q, want 200 late", status, body)
		}
	})
	t.Run("IdleTimeoutCutsAStalledStream", func(t *testing.T) {
		if got := events(t, base+"/strict/stall"); strings.Join(got, ",") != "one" {
			t.Errorf("events %v, want the stream cut after one", got)
		}
	})
	t.Run("TotalTimeoutCutsALongStream", func(t *testing.T) {
		got := events(t, base+"/strict/ticks?n=60&every=20ms") // 1.2 s > 600 ms
		if len(got) == 0 || len(got) >= 60 {
			t.Errorf("%d events, want the stream cut part way", len(got))
		}
	})
	t.Run("LongStreamOutlastsHeaderAndIdleTimeouts", func(t *testing.T) {
		// 12 events 50 ms apart: 550 ms, far past the upstream's 100 ms
		// header timeout, never silent for the 400 ms idle timeout.
		if got := events(t, base+"/streaming/ticks?n=12&every=50ms"); len(got) != 12 {
			t.Errorf("%d events, want all 12", len(got))
		}
	})
	t.Run("RouteWithoutTimeoutsWaitsForTheStall", func(t *testing.T) {
		if got := events(t, base+"/patient/stall"); strings.Join(got, ",") != "one,two" {
			t.Errorf("events %v, want both", got)
		}
	})

	reasons := map[string]string{}
	for _, r := range g.records() {
		reasons[r.Path] = r.Reason
	}
	for p, want := range map[string]string{
		"/strict/slow-headers": "upstream-timeout",
		"/strict/stall":        "upstream-idle-timeout",
		"/strict/ticks":        "route-timeout",
	} {
		if reasons[p] != want {
			t.Errorf("audit reason for %s = %q, want %q", p, reasons[p], want)
		}
	}
}
