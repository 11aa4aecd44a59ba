// Package route matches a canonical (host, path) pair to the most specific
// route: an exact host before a wildcard host ("*.example.com", longest
// suffix first) before any host, and within those the longest path prefix,
// matched on segment boundaries. It knows nothing of HTTP: callers pass the
// canonical host and path from package canon, so routing sees exactly what
// policy and the upstream see.
package route

import (
	"fmt"
	"sort"
	"strings"
)

// Entry is one route as given to New.
type Entry[T any] struct {
	// Host is "" (any host), an exact lower-case host name, or "*.suffix".
	Host string
	// Path is a canonical path prefix without a trailing slash ("/" for all).
	Path string
	// Value is returned by Match.
	Value T
}

type prefixes[T any] []Entry[T] // sorted by len(Path), longest first

func (ps prefixes[T]) match(path string) (T, bool) {
	for i := range ps {
		if HasPathPrefix(path, ps[i].Path) {
			return ps[i].Value, true
		}
	}
	var zero T
	return zero, false
}

type wildcard[T any] struct {
	suffix string // ".example.com"
	routes prefixes[T]
}

// Table is an immutable routing table, safe for concurrent use.
type Table[T any] struct {
	exact map[string]prefixes[T]
	wild  []wildcard[T] // longest suffix first
	any   prefixes[T]
}

// New builds a table. Two entries with the same host and path are an error.
func New[T any](entries []Entry[T]) (*Table[T], error) {
	t := &Table[T]{exact: map[string]prefixes[T]{}}
	seen := map[string]bool{}
	wild := map[string]prefixes[T]{}
	for _, e := range entries {
		if e.Path == "" || e.Path[0] != '/' || (len(e.Path) > 1 && strings.HasSuffix(e.Path, "/")) {
			return nil, fmt.Errorf("route %s%s: path must start with / and have no trailing slash", e.Host, e.Path)
		}
		key := e.Host + e.Path
		if seen[key] {
			return nil, fmt.Errorf("route %s: duplicate host and path", key)
		}
		seen[key] = true
		switch {
		case e.Host == "":
			t.any = append(t.any, e)
		case strings.HasPrefix(e.Host, "*."):
			s := e.Host[1:]
			wild[s] = append(wild[s], e)
		default:
			t.exact[e.Host] = append(t.exact[e.Host], e)
		}
	}
	for h, ps := range t.exact {
		t.exact[h] = sortPrefixes(ps)
	}
	for s, ps := range wild {
		t.wild = append(t.wild, wildcard[T]{suffix: s, routes: sortPrefixes(ps)})
	}
	sort.Slice(t.wild, func(i, j int) bool {
		if len(t.wild[i].suffix) != len(t.wild[j].suffix) {
			return len(t.wild[i].suffix) > len(t.wild[j].suffix)
		}
		return t.wild[i].suffix < t.wild[j].suffix
	})
	t.any = sortPrefixes(t.any)
	return t, nil
}

func sortPrefixes[T any](ps prefixes[T]) prefixes[T] {
	sort.SliceStable(ps, func(i, j int) bool { return len(ps[i].Path) > len(ps[j].Path) })
	return ps
}

// Match returns the value of the most specific route for a canonical host
// (a port, if any, is ignored) and canonical path.
func (t *Table[T]) Match(host, path string) (T, bool) {
	host = stripPort(host)
	if ps, ok := t.exact[host]; ok {
		if v, ok := ps.match(path); ok {
			return v, true
		}
	}
	for i := range t.wild {
		w := &t.wild[i]
		if len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			if v, ok := w.routes.match(path); ok {
				return v, true
			}
		}
	}
	return t.any.match(path)
}

// HasHost reports whether some route serves host (a port, if any, is
// ignored), on any path.
func (t *Table[T]) HasHost(host string) bool {
	host = stripPort(host)
	if len(t.any) > 0 || len(t.exact[host]) > 0 {
		return true
	}
	for i := range t.wild {
		if s := t.wild[i].suffix; len(host) > len(s) && strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// HasPathPrefix reports whether path is prefix or lies below it, on a
// segment boundary: "/api" covers "/api" and "/api/x" but not "/apix".
func HasPathPrefix(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// stripPort removes a trailing ":port" from a host, leaving IPv6 brackets.
func stripPort(h string) string {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.IndexByte(h[i:], ']') >= 0 {
		return h
	}
	if strings.HasPrefix(h, "[") {
		return h[:i]
	}
	if strings.IndexByte(h[:i], ':') >= 0 { // bare IPv6 without brackets
		return h
	}
	return h[:i]
}
