package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// jsonRecord is the documented JSON form of a Record, decoded with
// encoding/json to check AppendJSON independently.
type jsonRecord struct {
	Time       string   `json:"time"`
	RequestID  string   `json:"request_id"`
	ClientIP   string   `json:"client_ip"`
	Method     string   `json:"method"`
	Host       string   `json:"host"`
	Path       string   `json:"path"`
	Route      string   `json:"route"`
	Upstream   string   `json:"upstream"`
	Target     string   `json:"target"`
	AuthMethod string   `json:"auth_method"`
	Issuer     string   `json:"issuer"`
	Subject    string   `json:"subject"`
	Email      string   `json:"email"`
	Groups     []string `json:"groups"`
	Decision   string   `json:"decision"`
	Rule       string   `json:"rule"`
	Reason     string   `json:"reason"`
	Status     int      `json:"status"`
	Bytes      int64    `json:"bytes"`
	DurationMS float64  `json:"duration_ms"`
	UpstreamMS float64  `json:"upstream_ms"`
	TLS        bool     `json:"tls"`
	Proto      string   `json:"proto"`
}

// toRecord converts back to a Record, for comparison with cmp.
func (j jsonRecord) toRecord(t testing.TB) Record {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		t.Fatalf("time %q: %v", j.Time, err)
	}
	var ip netip.Addr
	if j.ClientIP != "" {
		if ip, err = netip.ParseAddr(j.ClientIP); err != nil {
			t.Fatalf("client_ip %q: %v", j.ClientIP, err)
		}
	}
	return Record{
		Time: tm, RequestID: j.RequestID, ClientIP: ip, Method: j.Method, Host: j.Host, Path: j.Path,
		Route: j.Route, Upstream: j.Upstream, Target: j.Target, AuthMethod: j.AuthMethod,
		Issuer: j.Issuer, Subject: j.Subject, Email: j.Email, Groups: j.Groups,
		Decision: j.Decision, Rule: j.Rule, Reason: j.Reason, Status: j.Status, Bytes: j.Bytes,
		Duration:         time.Duration(j.DurationMS*1e6 + 0.5),
		UpstreamDuration: time.Duration(j.UpstreamMS*1e6 + 0.5),
		TLS:              j.TLS, Proto: j.Proto,
	}
}

// decodeRecord decodes one line strictly: one object, only documented keys.
func decodeRecord(t testing.TB, line []byte) jsonRecord {
	t.Helper()
	if !json.Valid(line) {
		t.Fatalf("record is not valid JSON: %q", line)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var j jsonRecord
	if err := dec.Decode(&j); err != nil {
		t.Fatalf("decoding %q: %v", line, err)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value in %q", line)
	}
	return j
}

// parseLines decodes a JSON-lines stream.
func parseLines(t testing.TB, data []byte) []jsonRecord {
	t.Helper()
	var out []jsonRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, decodeRecord(t, sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("stream does not end with a newline: %q", data[max(0, len(data)-80):])
	}
	return out
}

// capture is a Logger writing to memory, with an operator log and a count
// of emitted records.
type capture struct {
	l       *Logger
	out     *syncBuffer
	opLog   *syncBuffer
	emitted atomic.Int64
}

func newCapture(t testing.TB) *capture {
	t.Helper()
	c := &capture{out: new(syncBuffer), opLog: new(syncBuffer)}
	l, err := New(Options{
		Output: "stdout",
		Stdout: c.out,
		Log:    slog.New(slog.NewJSONHandler(c.opLog, nil)),
		OnEmit: func(*Record) { c.emitted.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	c.l = l
	t.Cleanup(func() { l.Close() })
	return c
}

// waitEmitted polls until n records were emitted. Needed where the client
// can see the end of a response before Handler's defer has run (hijacked
// connections).
func (c *capture) waitEmitted(t testing.TB, n int64) {
	t.Helper()
	waitFor(t, func() bool { return c.emitted.Load() >= n })
}

// records closes the Logger and returns everything it wrote.
func (c *capture) records(t testing.TB) []jsonRecord {
	t.Helper()
	if err := c.l.Close(); err != nil {
		t.Fatal(err)
	}
	return parseLines(t, c.out.Bytes())
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for condition")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func countLines(b []byte) int { return strings.Count(string(b), "\n") }
