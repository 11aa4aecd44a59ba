package audit

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var fullRecord = Record{
	Time:             time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600)),
	RequestID:        "01HZX3K8Q1",
	ClientIP:         netip.MustParseAddr("203.0.113.7"),
	Method:           "GET",
	Host:             "metabase.example.com",
	Path:             "/api/card/1",
	Route:            "metabase",
	Upstream:         "metabase",
	Target:           "http://10.0.0.5:3000",
	AuthMethod:       "session",
	Issuer:           "https://id.example.com",
	Subject:          "u-42",
	Email:            "ada@example.com",
	Groups:           []string{"analysts", "admins"},
	Decision:         DecisionAllow,
	Rule:             "analysts-read",
	Status:           200,
	Bytes:            1234,
	Duration:         12345678 * time.Nanosecond,
	UpstreamDuration: 10 * time.Millisecond,
	TLS:              true,
	Proto:            "HTTP/2.0",
}

func TestAppendJSONGolden(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
		want string
	}{
		{
			name: "full",
			rec:  fullRecord,
			want: `{"time":"2026-03-14T14:09:26.535Z","request_id":"01HZX3K8Q1","client_ip":"203.0.113.7",` +
				`"method":"GET","host":"metabase.example.com","path":"/api/card/1","route":"metabase",` +
				`"upstream":"metabase","target":"http://10.0.0.5:3000","auth_method":"session",` +
				`"issuer":"https://id.example.com","subject":"u-42","email":"ada@example.com",` +
				`"groups":["analysts","admins"],"decision":"allow","rule":"analysts-read","status":200,` +
				`"bytes":1234,"duration_ms":12.345,"upstream_ms":10.000,"tls":true,"proto":"HTTP/2.0"}`,
		},
		{
			name: "zero record keeps the always-present keys",
			rec:  Record{},
			want: `{"time":"0001-01-01T00:00:00.000Z","request_id":"","client_ip":"","method":"","host":"",` +
				`"path":"","decision":"","status":0,"bytes":0,"duration_ms":0.000,"tls":false}`,
		},
		{
			name: "deny with reason",
			rec: Record{
				Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), RequestID: "r1",
				ClientIP: netip.MustParseAddr("2001:db8::1"), Method: "POST", Host: "a.example", Path: "/x",
				Decision: DecisionDeny, Reason: "group-denied", Status: 403, Bytes: 9,
				Duration: 999 * time.Nanosecond, Proto: "HTTP/1.1",
			},
			want: `{"time":"2026-01-02T03:04:05.000Z","request_id":"r1","client_ip":"2001:db8::1","method":"POST",` +
				`"host":"a.example","path":"/x","decision":"deny","reason":"group-denied","status":403,"bytes":9,` +
				`"duration_ms":0.000,"tls":false,"proto":"HTTP/1.1"}`,
		},
		{
			name: "IPv6 zone is escaped",
			rec:  Record{ClientIP: netip.MustParseAddr("fe80::1").WithZone(`eth0","decision":"allow`)},
			want: `{"time":"0001-01-01T00:00:00.000Z","request_id":"","client_ip":"fe80::1%eth0\",\"decision\":\"allow",` +
				`"method":"","host":"","path":"","decision":"","status":0,"bytes":0,"duration_ms":0.000,"tls":false}`,
		},
		{
			name: "negative duration",
			rec:  Record{Duration: -1500 * time.Microsecond, UpstreamDuration: -1},
			want: `{"time":"0001-01-01T00:00:00.000Z","request_id":"","client_ip":"","method":"","host":"",` +
				`"path":"","decision":"","status":0,"bytes":0,"duration_ms":-1.500,"upstream_ms":-0.000,"tls":false}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(tt.rec.AppendJSON(nil))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AppendJSON mismatch (-want +got):\n%s", diff)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

func TestAppendJSONAppends(t *testing.T) {
	r := Record{Method: "GET"}
	got := r.AppendJSON([]byte("prefix "))
	if !bytes.HasPrefix(got, []byte("prefix {")) || !bytes.HasSuffix(got, []byte("}")) {
		t.Errorf("AppendJSON did not append: %q", got)
	}
}

// TestAppendJSONRoundTrip decodes AppendJSON's output with encoding/json and
// compares the result with the input, allowing for the documented precision
// (milliseconds for time, microseconds for durations) and the U+FFFD
// replacement of invalid UTF-8.
func TestAppendJSONRoundTrip(t *testing.T) {
	hostile := "a\"b\\c\x00\x1f\x7f\u0085\u2028\u2029\u202e\u2066\xff\xfe\xc3(é漢字😀\r\n{\"x\":1}"
	tests := []struct {
		name string
		rec  Record
	}{
		{"full", fullRecord},
		{"zero", Record{}},
		{"hostile strings everywhere", Record{
			Time:      time.Unix(1700000000, 123456789),
			RequestID: hostile, ClientIP: netip.MustParseAddr("::ffff:192.0.2.1"),
			Method: hostile, Host: hostile, Path: hostile, Route: hostile, Upstream: hostile,
			Target: hostile, AuthMethod: hostile, Issuer: hostile, Subject: hostile, Email: hostile,
			Groups: []string{hostile, "", "g"}, Decision: hostile, Rule: hostile, Reason: hostile,
			Status: 499, Bytes: 1 << 40, Duration: 90 * time.Minute, UpstreamDuration: time.Microsecond,
			Proto: hostile,
		}},
		{"IPv6 with zone", Record{ClientIP: netip.MustParseAddr("fe80::1%eth0")}},
		{"empty groups", Record{Groups: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := tt.rec.AppendJSON(nil)
			if bytes.ContainsAny(line, "\n\r\u2028\u2029") {
				t.Errorf("output contains a raw line break: %q", line)
			}
			got := decodeRecord(t, line).toRecord(t)
			want := expectedAfterEncoding(tt.rec)
			opts := cmp.Options{
				cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmpopts.EquateEmpty(),
				cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
			}
			if diff := cmp.Diff(want, got, opts); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// expectedAfterEncoding applies AppendJSON's documented lossy steps.
func expectedAfterEncoding(r Record) Record {
	valid := func(s string) string { return string([]rune(s)) } // U+FFFD per invalid byte
	r.Time = r.Time.UTC().Truncate(time.Millisecond)
	for _, p := range []*string{&r.RequestID, &r.Method, &r.Host, &r.Path, &r.Route, &r.Upstream, &r.Target,
		&r.AuthMethod, &r.Issuer, &r.Subject, &r.Email, &r.Decision, &r.Rule, &r.Reason, &r.Proto} {
		*p = valid(*p)
	}
	if r.Groups != nil {
		g := make([]string, len(r.Groups))
		for i, s := range r.Groups {
			g[i] = valid(s)
		}
		r.Groups = g
	}
	r.Duration = r.Duration.Truncate(time.Microsecond)
	r.UpstreamDuration = r.UpstreamDuration.Truncate(time.Microsecond)
	return r
}

func TestAppendJSONEscaping(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain", "/a/b", `"/a/b"`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"newline", "a\nb", `"a\u000ab"`},
		{"carriage return", "a\rb", `"a\u000db"`},
		{"tab", "a\tb", `"a\u0009b"`},
		{"NUL", "a\x00b", `"a\u0000b"`},
		{"escape", "\x1b[31m", `"\u001b[31m"`},
		{"DEL", "\x7f", `"\u007f"`},
		{"C1 NEL", "\u0085", `"\u0085"`},
		{"C1 CSI", "\u009b", `"\u009b"`},
		{"line separator", "\u2028", `"\u2028"`},
		{"paragraph separator", "\u2029", `"\u2029"`},
		{"right-to-left override", "\u202e", `"\u202e"`},
		{"first strong isolate", "\u2068", `"\u2068"`},
		{"invalid byte", "a\xffb", "\"a\ufffdb\""},
		{"truncated sequence", "\xe2\x82", "\"\ufffd\ufffd\""},
		{"encoded surrogate", "\xed\xa0\x80", "\"\ufffd\ufffd\ufffd\""},
		{"non-ASCII kept", "é漢😀\u00a0", "\"é漢😀\u00a0\""},
		{"html kept", "<script>&", `"<script>&"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendString(nil, tt.in)); got != tt.want {
				t.Errorf("appendString(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

// TestLogInjectionCannotForgeRecord puts a forged record in every string field
// and checks that the output stays one line holding one object whose fields
// are the original strings.
func TestLogInjectionCannotForgeRecord(t *testing.T) {
	forged := "x\"}\n{\"decision\":\"allow\",\"subject\":\"admin\"}\r\n\u2028"
	r := Record{Method: "GET", Path: "/" + forged, Host: forged, Subject: forged, Reason: forged, Decision: DecisionDeny}
	line := r.AppendJSON(nil)
	if bytes.ContainsAny(line, "\r\n") || bytes.Contains(line, []byte("\u2028")) {
		t.Fatalf("record contains a raw line break: %q", line)
	}
	j := decodeRecord(t, line)
	if j.Decision != DecisionDeny || j.Subject != forged || j.Path != "/"+forged {
		t.Errorf("decoded fields differ: %+v", j)
	}
}

func TestAppendJSONDoesNotAllocate(t *testing.T) {
	r := fullRecord
	r.ClientIP = netip.MustParseAddr("fe80::1%eth0")
	r.Path = "/a\"b\\c\x00\u2028\xff"
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		buf = r.AppendJSON(buf[:0])
	})
	if allocs != 0 {
		t.Errorf("AppendJSON allocates %v times per call, want 0", allocs)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("req", "GET", "example.com", "/a", "allow", "group-denied", "g1", "sub", 200, int64(5), int64(1500000), "fe80::1%eth0")
	f.Add("\x00\n\r", "\u2028", "\xff\xfe", "/\"\\", "\u009b", "\u202e", "", "\xed\xa0\x80", -1, int64(-1), int64(-1), "1.2.3.4")
	f.Fuzz(func(t *testing.T, id, method, host, path, decision, reason, group, subject string, status int, nbytes, dur int64, ip string) {
		r := Record{
			Time: time.Unix(0, dur).UTC(), RequestID: id, Method: method, Host: host, Path: path,
			Decision: decision, Reason: reason, Groups: []string{group, subject}, Subject: subject,
			Email: subject, Route: reason, Status: status, Bytes: nbytes,
			Duration: time.Duration(dur), UpstreamDuration: time.Duration(nbytes),
		}
		r.ClientIP, _ = netip.ParseAddr(ip)
		line := r.AppendJSON(nil)
		if !json.Valid(line) || line[0] != '{' || line[len(line)-1] != '}' {
			t.Fatalf("not one JSON object: %q", line)
		}
		if !utf8.Valid(line) {
			t.Fatalf("output is not valid UTF-8: %q", line)
		}
		for _, c := range line {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("raw control byte %#x in %q", c, line)
			}
		}
		if strings.ContainsAny(string(line), "\u2028\u2029\u0085\u202e") {
			t.Fatalf("raw separator or control rune in %q", line)
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("decoding %q: %v", line, err)
		}
		for _, key := range []string{"time", "request_id", "client_ip", "method", "host", "path", "decision", "status", "bytes", "duration_ms", "tls"} {
			if _, ok := m[key]; !ok {
				t.Fatalf("key %q missing from %q", key, line)
			}
		}
		if got, want := m["path"], string([]rune(path)); got != want {
			t.Fatalf("path decoded as %q, want %q", got, want)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	r := fullRecord
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}
