package metabasetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Streamed query defaults (contract 4: long-running work comes back as a
// streamed, chunked response).
const (
	DefaultQueryDuration = 2 * time.Second
	DefaultQueryInterval = 50 * time.Millisecond
)

// msgQueryCanceled is what Metabase records when the client goes away
// before the query finishes (contract 4).
const msgQueryCanceled = "Request canceled before finishing"

// Query is one POST /api/dataset call, for assertions.
type Query struct {
	// Email is the caller's email (a hidden address for an API key).
	Email string
	// Native is the body's native.query, if any.
	Native string
	// Rows is how many rows were written before the query ended.
	Rows int
	// Completed is true when the whole result was written.
	Completed bool
	// Canceled is true when the client went away first; Error is then
	// "Request canceled before finishing".
	Canceled bool
	Error    string
	// Done is true once the handler has returned; the other fields are
	// final only then.
	Done bool
}

// Queries returns a snapshot of the POST /api/dataset calls so far, in
// arrival order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Query, 0, len(s.queries))
	for _, q := range s.queries {
		out = append(out, *q)
	}
	return out
}

// dataset serves POST /api/dataset, a native query whose result streams
// (contract 4): 202 [inferred: Metabase's streaming responses answer 202]
// with Content-Type application/json, X-Accel-Buffering: no and no
// Content-Length, so the body is chunked. It writes one row every
// QueryInterval for QueryDuration, by the wall clock, flushing each, then
// closes the JSON. When the client disconnects first, it stops, as Metabase
// cancels the query, and records the cancellation (Queries).
//
// It authenticates by session or x-api-key without holding s.mu while it
// streams (unlike the admin handlers).
func (s *Server) dataset(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Database int `json:"database"`
		Native   struct {
			Query string `json:"query"`
		} `json:"native"`
	}
	s.mu.Lock()
	u := s.callerLocked(r)
	s.mu.Unlock()
	if u == nil {
		writeText(w, http.StatusUnauthorized, "Unauthenticated")
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErrors(w, http.StatusBadRequest, "query", "value must be a map.")
		return
	}
	q := &Query{Email: u.email, Native: body.Native.Query}
	s.mu.Lock()
	s.queries = append(s.queries, q)
	s.mu.Unlock()
	update := func(f func(*Query)) {
		s.mu.Lock()
		defer s.mu.Unlock()
		f(q)
	}
	defer update(func(q *Query) { q.Done = true })

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusAccepted)
	write := func(text string) bool {
		if _, err := w.Write([]byte(text)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write(`{"data":{"rows":[`) {
		update(cancel)
		return
	}
	ticker := time.NewTicker(s.opts.QueryInterval)
	defer ticker.Stop()
	deadline := time.NewTimer(s.opts.QueryDuration)
	defer deadline.Stop()
	rows := 0
	for {
		select {
		case <-r.Context().Done():
			update(cancel)
			return
		case <-deadline.C:
			write(fmt.Sprintf(`]},"row_count":%d,"status":"completed"}`, rows))
			update(func(q *Query) { q.Completed = true })
			return
		case <-ticker.C:
			sep := ","
			if rows == 0 {
				sep = ""
			}
			if !write(fmt.Sprintf("%s[%d]\n", sep, rows+1)) {
				update(cancel)
				return
			}
			rows++
			update(func(q *Query) { q.Rows = rows })
		}
	}
}

func cancel(q *Query) {
	q.Canceled = true
	q.Error = msgQueryCanceled
}
