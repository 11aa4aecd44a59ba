// Package fileerr is the positioned error that every gatehouse file format
// reports (the configuration, the built-in provider's users file): one
// problem per Error, printed as FILE:LINE:COL: field.path: message, and a
// sorted list of them printed one per line, so every problem in a file is
// reported at once in the same shape. It is a leaf package.
package fileerr

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a file, with its position (1-based; Line 0 when
// it concerns the whole file) and the dotted path of the field.
type Error struct {
	File      string
	Line, Col int
	Path      string
	Msg       string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file. Its Error method prints one
// problem per line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sort orders the problems by position, then path, then message.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Msg < b.Msg
	})
}
