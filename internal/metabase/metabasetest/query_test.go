package metabasetest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// datasetRequest starts POST /api/dataset with the session key and returns
// the response with its body unread.
// With cookie set it sends the key as metabase.SESSION, which puts the
// server's metabase.TIMEOUT-writing middleware in the response path.
func datasetRequest(t *testing.T, ctx context.Context, s *Server, key string, cookie bool) *http.Response {
	t.Helper()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/api/dataset",
		strings.NewReader(`{"database":1,"type":"native","native":{"query":"select 1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if cookie {
		hr.AddCookie(&http.Cookie{Name: SessionCookie, Value: key})
	} else {
		hr.Header.Set("X-Metabase-Session", key)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// waitQuery polls until the n-th query's handler has returned.
func waitQuery(t *testing.T, s *Server, n int) Query {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if qs := s.Queries(); len(qs) > n && qs[n].Done {
			return qs[n]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("query %d never finished: %+v", n, s.Queries())
	return Query{}
}

// TestDatasetStreamsChunked pins section 4: the result streams, chunked and
// unbuffered, and the first rows arrive long before the query ends.
func TestDatasetStreamsChunked(t *testing.T) {
	s := New(t, Options{QueryDuration: 500 * time.Millisecond, QueryInterval: 10 * time.Millisecond})
	key := passwordLogin(t, s, SetupAdminEmail, SetupAdminPassword)
	start := time.Now()
	resp := datasetRequest(t, t.Context(), s, key, true)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.TransferEncoding; len(got) != 1 || got[0] != "chunked" {
		t.Errorf("Transfer-Encoding %v, want chunked", got)
	}
	if resp.ContentLength != -1 {
		t.Errorf("Content-Length %d, want none", resp.ContentLength)
	}
	if got := resp.Header.Get("X-Accel-Buffering"); got != "no" {
		t.Errorf("X-Accel-Buffering %q", got)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(first, "[1]") {
		t.Errorf("first chunk %q", first)
	}
	if el := time.Since(start); el >= 500*time.Millisecond {
		t.Errorf("first row after %v: the response was buffered", el)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Data struct {
			Rows [][]int `json:"rows"`
		} `json:"data"`
		RowCount int    `json:"row_count"`
		Status   string `json:"status"`
	}
	if err := json.Unmarshal([]byte(first+string(rest)), &out); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if out.Status != "completed" || out.RowCount == 0 || len(out.Data.Rows) != out.RowCount {
		t.Errorf("result %+v", out)
	}
	q := waitQuery(t, s, 0)
	if !q.Completed || q.Canceled || q.Email != SetupAdminEmail || q.Native != "select 1" || q.Rows != out.RowCount {
		t.Errorf("recorded %+v", q)
	}
}

// TestDatasetClientGoneCancelsQuery pins section 4 and 6.4: when the client
// disconnects, the query stops and the cancellation is recorded.
func TestDatasetClientGoneCancelsQuery(t *testing.T) {
	s := New(t, Options{QueryDuration: time.Hour, QueryInterval: 5 * time.Millisecond})
	key := passwordLogin(t, s, SetupAdminEmail, SetupAdminPassword)
	ctx, cancel := context.WithCancel(t.Context())
	resp := datasetRequest(t, ctx, s, key, false)
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	q := waitQuery(t, s, 0)
	if !q.Canceled || q.Completed || q.Error != msgQueryCanceled || q.Rows == 0 {
		t.Errorf("recorded %+v", q)
	}
}

// TestDatasetNeedsSession pins 2.1: no session, no query.
func TestDatasetNeedsSession(t *testing.T) {
	s := New(t, Options{})
	r := do(t, s, req{method: http.MethodPost, path: "/api/dataset", body: map[string]any{"database": 1}})
	wantStatus(t, r, http.StatusUnauthorized)
	if len(s.Queries()) != 0 {
		t.Error("unauthenticated query recorded")
	}
	r = do(t, s, req{method: http.MethodPost, path: "/api/dataset", body: map[string]any{"database": 1},
		header: map[string]string{"X-Metabase-Session": randomUUID()}})
	wantStatus(t, r, http.StatusUnauthorized)
}
