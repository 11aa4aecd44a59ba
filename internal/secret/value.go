package secret

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
)

// redacted is what a Value prints as, everywhere.
const redacted = "[redacted]"

// Value is a resolved secret. It prints as [redacted] everywhere: through
// String, GoString, every fmt verb (it implements [fmt.Formatter]),
// encoding/json, [encoding.TextMarshaler] and [slog.LogValuer]. Only
// [Value.Reveal] returns the bytes.
//
// fmt prints a Value in an unexported struct field by reflection, without
// calling its methods, and a wrong verb makes it dump the field's type and
// contents. So the bytes are reachable only through a function value, which
// fmt and reflection-based printers show as an address. The zero Value holds
// no secret.
//
// Go cannot guarantee that memory is wiped, so Value does not try; it guards
// against accidental disclosure, not against a reader of process memory.
type Value struct {
	p *box
}

// box hides the secret bytes inside a closure; see Value. Value holds a
// *box rather than the func itself so that Value stays comparable and copies
// of one Value are reflect.DeepEqual.
type box struct {
	get func() []byte
}

// NewValue returns a Value holding a copy of b. Later changes to b do not
// affect the Value.
func NewValue(b []byte) Value {
	if len(b) == 0 {
		return Value{}
	}
	c := append([]byte(nil), b...)
	return Value{p: &box{get: func() []byte { return c }}}
}

// Reveal returns a copy of the raw secret bytes, or nil for the zero Value.
// Callers must not log, print or return the bytes to a client.
func (v Value) Reveal() []byte {
	if v.p == nil {
		return nil
	}
	return append([]byte(nil), v.p.get()...)
}

// IsZero reports whether v holds no secret.
func (v Value) IsZero() bool {
	return v.p == nil
}

// Equal reports whether v and o hold the same bytes. The comparison takes time
// independent of the contents (crypto/subtle); like any such comparison it
// does reveal whether the lengths differ.
func (v Value) Equal(o Value) bool {
	return subtle.ConstantTimeCompare(v.bytes(), o.bytes()) == 1
}

// bytes returns the secret without copying; for use inside the package only.
func (v Value) bytes() []byte {
	if v.p == nil {
		return nil
	}
	return v.p.get()
}

// String returns "[redacted]".
func (v Value) String() string { return redacted }

// GoString returns "[redacted]", so %#v does not show the contents either.
func (v Value) GoString() string { return redacted }

// Format implements [fmt.Formatter] so that every verb, including %x, %d and
// %q, prints "[redacted]" (quoted for %q) instead of the bytes.
func (v Value) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = io.WriteString(f, `"`+redacted+`"`)
		return
	}
	_, _ = io.WriteString(f, redacted)
}

// MarshalJSON implements [encoding/json.Marshaler]; it returns the JSON string
// "[redacted]".
func (v Value) MarshalJSON() ([]byte, error) {
	return []byte(`"` + redacted + `"`), nil
}

// MarshalText implements [encoding.TextMarshaler], used by encoding/xml, YAML
// encoders and others; it returns "[redacted]".
func (v Value) MarshalText() ([]byte, error) {
	return []byte(redacted), nil
}

// LogValue implements [slog.LogValuer]; it returns the string "[redacted]".
func (v Value) LogValue() slog.Value {
	return slog.StringValue(redacted)
}
