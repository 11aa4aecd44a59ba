package audit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewValidatesOptions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"empty output", Options{}, `audit: output is required ("stdout", "stderr" or an absolute file path)`},
		{"relative path", Options{Output: "audit.log"}, `audit: output "audit.log" is not "stdout", "stderr" or an absolute file path`},
		{"missing parent", Options{Output: dir + "/nope/audit.log"}, "audit: output directory " + dir + "/nope: no such file or directory"},
		{"parent is a file", Options{Output: file + "/audit.log"}, "audit: output directory " + file + " is not a directory"},
		{"path is a directory", Options{Output: dir}, "audit: opening " + dir + ": is a directory"},
		{"negative flush interval", Options{Output: "stdout", FlushInterval: -1}, "audit: flush interval -1ns is negative"},
		{"negative check interval", Options{Output: "stdout", CheckInterval: -1}, "audit: check interval -1ns is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.opts)
			if err == nil {
				l.Close()
				t.Fatalf("New succeeded, want %q", tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("New error = %q, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestStdoutAndStderr(t *testing.T) {
	for _, out := range []string{"stdout", "stderr"} {
		t.Run(out, func(t *testing.T) {
			var stdout, stderr syncBuffer
			l, err := New(Options{Output: out, Stdout: &stdout, Stderr: &stderr})
			if err != nil {
				t.Fatal(err)
			}
			l.Emit(&Record{RequestID: "a"})
			l.Emit(&Record{RequestID: "b"})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got, other := &stdout, &stderr
			if out == "stderr" {
				got, other = other, got
			}
			recs := parseLines(t, got.Bytes())
			if len(recs) != 2 || recs[0].RequestID != "a" || recs[1].RequestID != "b" {
				t.Errorf("records = %+v", recs)
			}
			if other.String() != "" {
				t.Errorf("the other stream got %q", other.String())
			}
		})
	}
}

// TestFlushIntervalWritesWithoutClose checks that a buffered record reaches
// the sink within FlushInterval, with no Close.
func TestFlushIntervalWritesWithoutClose(t *testing.T) {
	var out syncBuffer
	l, err := New(Options{Output: "stdout", Stdout: &out, FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Emit(&Record{RequestID: "r"})
	waitFor(t, func() bool { return countLines(out.Bytes()) == 1 })
}

// TestBurstFlushesEarly checks that a large burst is written before the
// flush interval.
func TestBurstFlushesEarly(t *testing.T) {
	var out syncBuffer
	l, err := New(Options{Output: "stdout", Stdout: &out, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := &Record{Path: strings.Repeat("p", 1000)}
	for range 100 { // about 100 KiB, above the 64 KiB threshold
		l.Emit(r)
	}
	waitFor(t, func() bool { return countLines(out.Bytes()) >= 60 })
}

func TestOnEmitCalledOncePerRecord(t *testing.T) {
	var calls []string
	var out syncBuffer
	l, err := New(Options{Output: "stdout", Stdout: &out, OnEmit: func(r *Record) {
		calls = append(calls, r.RequestID)
		r.Route = "set-by-hook" // runs before encoding
	}})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(&Record{RequestID: "1"})
	l.Emit(&Record{RequestID: "2"})
	l.Emit(nil)
	l.Close()
	if strings.Join(calls, ",") != "1,2" {
		t.Errorf("OnEmit calls = %v", calls)
	}
	if recs := parseLines(t, out.Bytes()); len(recs) != 2 || recs[0].Route != "set-by-hook" {
		t.Errorf("records = %+v", recs)
	}
}

func TestFileSinkAppendsWithMode0640(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("{\"existing\":true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{Output: path})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(&Record{RequestID: "new"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "{\"existing\":true}\n{") || countLines(b) != 2 {
		t.Errorf("file = %q, want the old line kept and one appended", b)
	}

	fresh := filepath.Join(t.TempDir(), "fresh.log")
	l, err = New(Options{Output: fresh})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	fi, err := os.Stat(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("new file mode = %v, want at most 0640", perm)
	}
}

func TestCloseIsIdempotentAndLateEmitIsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := New(Options{Output: path})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(&Record{RequestID: "before"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l.Emit(&Record{RequestID: "after"}) // e.g. a WebSocket that outlived Shutdown
	if err := l.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}
	b, _ := os.ReadFile(path)
	recs := parseLines(t, b)
	if len(recs) != 2 || recs[0].RequestID != "before" || recs[1].RequestID != "after" {
		t.Errorf("records = %+v", recs)
	}
}

// readIDs reads every file given and returns how often each request ID
// appears, failing on any line that is not a whole record.
func readIDs(t *testing.T, paths ...string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			t.Fatal(err)
		}
		for _, r := range parseLines(t, b) {
			ids[r.RequestID]++
		}
	}
	return ids
}

func TestMovedFileIsReopenedWithinCheckInterval(t *testing.T) {
	for _, how := range []string{"renamed", "removed"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.log")
			rotated := filepath.Join(dir, "audit.log.1")
			l, err := New(Options{Output: path, FlushInterval: 5 * time.Millisecond, CheckInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			l.Emit(&Record{RequestID: "old"})
			waitFor(t, func() bool { b, _ := os.ReadFile(path); return countLines(b) == 1 })
			if how == "renamed" {
				err = os.Rename(path, rotated)
			} else {
				err = os.Remove(path)
			}
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { _, err := os.Stat(path); return err == nil })
			l.Emit(&Record{RequestID: "new"})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if ids := readIDs(t, path); ids["new"] != 1 || len(ids) != 1 {
				t.Errorf("new file has %v, want only the new record", ids)
			}
			if how == "renamed" {
				if ids := readIDs(t, rotated); ids["old"] != 1 || len(ids) != 1 {
					t.Errorf("rotated file has %v, want only the old record", ids)
				}
			}
		})
	}
}

func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	rotated := filepath.Join(dir, "audit.log.1")
	// A long CheckInterval shows that Reopen alone does the switch.
	l, err := New(Options{Output: path, FlushInterval: time.Hour, CheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(&Record{RequestID: "old"})
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Emit(&Record{RequestID: "new"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if ids := readIDs(t, rotated); ids["old"] != 1 || len(ids) != 1 {
		t.Errorf("rotated file has %v, want the record buffered before Reopen", ids)
	}
	if ids := readIDs(t, path); ids["new"] != 1 || len(ids) != 1 {
		t.Errorf("new file has %v, want only the new record", ids)
	}
}

func TestReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "logs")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(logDir, "audit.log")
	var op syncBuffer
	l, err := New(Options{Output: path, CheckInterval: 5 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&op, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Move the whole directory away: the path cannot be reopened.
	moved := filepath.Join(dir, "logs.old")
	if err := os.Rename(logDir, moved); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen succeeded without a directory")
	}
	waitFor(t, func() bool { return strings.Contains(op.String(), "cannot be reopened") })
	l.Emit(&Record{RequestID: "kept"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if ids := readIDs(t, filepath.Join(moved, "audit.log")); ids["kept"] != 1 {
		t.Errorf("old file has %v, want the record", ids)
	}
	if n := strings.Count(op.String(), "cannot be reopened"); n != 1 {
		t.Errorf("reopen failure logged %d times, want once: %s", n, op.String())
	}
}

// TestRotationUnderConcurrentEmitLosesAndRepeatsNothing emits 8 × 2,000
// records while the file is renamed away repeatedly, alternating between
// SIGHUP-style Reopen and detection by the CheckInterval poll, and then
// counts every record across all the files.
func TestRotationUnderConcurrentEmitLosesAndRepeatsNothing(t *testing.T) {
	const goroutines, perG = 8, 2000
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := New(Options{Output: path, FlushInterval: time.Millisecond, CheckInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The emitters go in four chunks and start chunk k only after k
	// rotations, so however fast Emit is, records are written across at
	// least three rotations while other goroutines still emit.
	const chunks = 4
	var emitted, rotations atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := &Record{Method: "GET", Path: "/rotate", Groups: []string{"g"}}
			for i := range perG {
				for k := int64(i * chunks / perG); rotations.Load() < k; {
					time.Sleep(time.Millisecond)
				}
				r.RequestID = strconv.Itoa(g*perG + i)
				l.Emit(r)
				emitted.Add(1)
			}
		})
	}
	files := []string{path}
	for i := 1; emitted.Load() < goroutines*perG; i++ {
		rotated := fmt.Sprintf("%s.%d", path, i)
		if err := os.Rename(path, rotated); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		files = append(files, rotated)
		if i%2 == 0 {
			if err := l.Reopen(); err != nil {
				t.Fatal(err)
			}
		} else {
			time.Sleep(5 * time.Millisecond) // let the CheckInterval poll notice
		}
		rotations.Add(1)
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ids := readIDs(t, files...)
	var perFile []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		perFile = append(perFile, countLines(b))
	}
	t.Logf("records per file across %d rotations: %v", len(files)-1, perFile)
	if len(files) < 3 {
		t.Errorf("only %d rotations happened", len(files)-1)
	}
	for i := range goroutines * perG {
		if n := ids[strconv.Itoa(i)]; n != 1 {
			t.Fatalf("record %d appears %d times", i, n)
		}
	}
	if len(ids) != goroutines*perG {
		t.Errorf("got %d distinct records, want %d", len(ids), goroutines*perG)
	}
}

// flakyWriter fails while broken is set, writing nothing.
type flakyWriter struct {
	broken atomic.Bool
	out    syncBuffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	if w.broken.Load() {
		return 0, errors.New("disk full")
	}
	return w.out.Write(p)
}

// TestFailingSinkFailsClosed breaks the sink, checks that Handler then
// refuses requests with 503 and an audit-unavailable record, and that once
// the sink recovers every record is written, in order, exactly once.
func TestFailingSinkFailsClosed(t *testing.T) {
	w := &flakyWriter{}
	var op syncBuffer
	l, err := New(Options{Output: "stdout", Stdout: w, FlushInterval: 2 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&op, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var served atomic.Int64
	h := Handler(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		FromContext(r.Context()).RequestID = r.URL.Path
	}))
	do := func(path string) int {
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, httptest.NewRequest("GET", path, nil))
		return rw.Code
	}

	if code := do("/1"); code != 200 {
		t.Fatalf("healthy sink: status %d", code)
	}
	w.broken.Store(true)
	l.Emit(&Record{RequestID: "/2"})
	waitFor(t, func() bool { return l.Err() != nil })
	if got := l.Err().Error(); got != "audit: writing records: disk full" {
		t.Errorf("Err() = %q", got)
	}
	if code := do("/refused"); code != http.StatusServiceUnavailable {
		t.Errorf("failing sink: status %d, want 503", code)
	}
	if served.Load() != 1 {
		t.Errorf("inner handler ran %d times, want 1 (not for the refused request)", served.Load())
	}

	w.broken.Store(false)
	waitFor(t, func() bool { return l.Err() == nil })
	if code := do("/3"); code != 200 {
		t.Errorf("recovered sink: status %d", code)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := parseLines(t, w.out.Bytes())
	var got []string
	for _, r := range recs {
		got = append(got, r.RequestID+"|"+r.Path+"|"+strconv.Itoa(r.Status)+"|"+r.Reason)
	}
	want := []string{"/1|/1|200|", "/2||0|", "|/refused|503|audit-unavailable", "/3|/3|200|"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("records = %v, want %v", got, want)
	}
	for _, s := range []string{"audit sink write failed", "audit sink recovered"} {
		if strings.Count(op.String(), s) != 1 {
			t.Errorf("operator log should say %q once: %s", s, op.String())
		}
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	release chan struct{}
	n       atomic.Int64
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.n.Add(int64(countLines(p)))
	return len(p), nil
}

// TestStalledSinkDoesNotBlockEmit checks that Emit returns while the sink is
// stuck, that a backlog beyond the limit is reported, and that nothing is
// lost once the sink moves again.
func TestStalledSinkDoesNotBlockEmit(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	l, err := New(Options{Output: "stdout", Stdout: w, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &Record{Path: strings.Repeat("x", 1000)}
	const n = 6000 // about 6 MiB, beyond the 4 MiB backlog limit
	done := make(chan struct{})
	go func() {
		for range n {
			l.Emit(r)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Emit blocked on a stalled sink")
	}
	if err := l.Err(); err == nil || err.Error() != "audit: sink is more than 4 MiB behind" {
		t.Errorf("Err() = %v", err)
	}
	close(w.release)
	waitFor(t, func() bool { return l.Err() == nil })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.n.Load(); got != n {
		t.Errorf("wrote %d records, want %d", got, n)
	}
}

func BenchmarkEmit(b *testing.B) {
	l, err := New(Options{Output: "stdout", Stdout: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := fullRecord
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Emit(&r)
		}
	})
}
