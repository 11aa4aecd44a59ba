package secret

import (
	"bytes"
	"encoding"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// testSecret is long and distinctive so that any leak, in any encoding, is
// easy to find.
const testSecret = "correct-horse-battery-staple-4f9a"

// leakForms returns the encodings in which a leaked secret could appear: raw,
// hex (either case), decimal byte lists as fmt prints a []byte, and base64
// as encoding/json prints a []byte.
func leakForms(secret string) []string {
	b := []byte(secret)
	return []string{
		secret,
		fmt.Sprintf("%x", b),
		fmt.Sprintf("%X", b),
		strings.Trim(fmt.Sprint(b), "[]"), //nolint:staticcheck // the byte values, as fmt prints a []byte
		strings.Trim(fmt.Sprintf("% x", b), " "),
		mustJSON(b),
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return strings.Trim(string(b), `"`)
}

func assertNoLeak(t *testing.T, what, out string) {
	t.Helper()
	for _, form := range leakForms(testSecret) {
		if strings.Contains(out, form) {
			t.Errorf("%s leaks the secret (as %q): %s", what, form, out)
		}
	}
}

// TestValueRedactedInEveryFormat prints a Value, and structs holding one in
// exported and unexported fields, through every formatting path and searches
// the output for the secret.
func TestValueRedactedInEveryFormat(t *testing.T) {
	v := NewValue([]byte(testSecret))
	type exported struct {
		Name   string
		Secret Value
		Ptr    *Value
		List   []Value
		Map    map[string]Value
	}
	type unexported struct {
		name   string
		secret Value
		ptr    *Value
	}
	ex := exported{Name: "client", Secret: v, Ptr: &v, List: []Value{v}, Map: map[string]Value{"k": v}}
	un := unexported{name: "client", secret: v, ptr: &v}
	nested := struct {
		Inner exported
		inner unexported
	}{ex, un}

	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%b", "%c", "%U", "%e", "%t", "%p", "%T", "%10.3s", "%-20v", "% x", "%#x"}
	values := map[string]any{
		"Value":              v,
		"*Value":             &v,
		"exported struct":    ex,
		"*exported struct":   &ex,
		"unexported struct":  un,
		"*unexported struct": &un,
		"nested struct":      nested,
		"slice":              []Value{v, v},
		"map":                map[Value]int{v: 1},
		"interface slice":    []any{v, &v, ex, un},
	}
	for name, val := range values {
		for _, verb := range verbs {
			assertNoLeak(t, fmt.Sprintf("%s printed with %s", name, verb), fmt.Sprintf(verb, val))
		}
		assertNoLeak(t, name+" via Sprint", fmt.Sprint(val))
		assertNoLeak(t, name+" via Sprintln", fmt.Sprintln(val))
		assertNoLeak(t, name+" in an error", fmt.Errorf("wrapped: %v", val).Error())
		if b, err := json.Marshal(val); err == nil {
			assertNoLeak(t, name+" via json.Marshal", string(b))
		}
		var slogJSON, slogText bytes.Buffer
		slog.New(slog.NewJSONHandler(&slogJSON, nil)).Info("msg", "val", val, slog.Any("any", val), slog.Group("g", "val", val))
		slog.New(slog.NewTextHandler(&slogText, nil)).Info("msg", "val", val, slog.Any("any", val), slog.Group("g", "val", val))
		assertNoLeak(t, name+" via slog JSON handler", slogJSON.String())
		assertNoLeak(t, name+" via slog text handler", slogText.String())
	}
}

func TestValueRendersAsRedacted(t *testing.T) {
	v := NewValue([]byte(testSecret))
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"String", v.String(), "[redacted]"},
		{"GoString", v.GoString(), "[redacted]"},
		{"%v", fmt.Sprintf("%v", v), "[redacted]"},
		{"%+v", fmt.Sprintf("%+v", v), "[redacted]"},
		{"%#v", fmt.Sprintf("%#v", v), "[redacted]"},
		{"%s", fmt.Sprintf("%s", v), "[redacted]"},
		{"%q", fmt.Sprintf("%q", v), `"[redacted]"`},
		{"%x", fmt.Sprintf("%x", v), "[redacted]"},
		{"%X", fmt.Sprintf("%X", v), "[redacted]"},
		{"%d", fmt.Sprintf("%d", v), "[redacted]"},
		{"struct %+v", fmt.Sprintf("%+v", struct{ Key Value }{v}), "{Key:[redacted]}"},
		{"json", mustMarshal(t, json.Marshal, v), `"[redacted]"`},
		{"json struct", mustMarshal(t, json.Marshal, struct{ Key Value }{v}), `{"Key":"[redacted]"}`},
		{"text", mustMarshal(t, func(any) ([]byte, error) { return encoding.TextMarshaler(v).MarshalText() }, v), "[redacted]"},
		{"xml", mustMarshal(t, xml.Marshal, xmlDoc{v}), "<xmlDoc><Key>[redacted]</Key></xmlDoc>"},
		{"slog LogValue", v.LogValue().String(), "[redacted]"},
		{"zero Value", fmt.Sprint(Value{}), "[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestValueInSlogRecords(t *testing.T) {
	v := NewValue([]byte(testSecret))
	type config struct {
		ClientID     string
		ClientSecret Value
	}
	var jsonOut, textOut bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&jsonOut, nil), slog.NewTextHandler(&textOut, nil)} {
		slog.New(h).Info("loaded", "secret", v, "config", config{"gatehouse", v})
	}
	if !strings.Contains(jsonOut.String(), `"secret":"[redacted]"`) || !strings.Contains(jsonOut.String(), `"ClientSecret":"[redacted]"`) {
		t.Errorf("JSON handler output lacks [redacted]: %s", jsonOut.String())
	}
	if !strings.Contains(textOut.String(), "secret=[redacted]") || !strings.Contains(textOut.String(), "ClientSecret:[redacted]") {
		t.Errorf("text handler output lacks [redacted]: %s", textOut.String())
	}
	assertNoLeak(t, "slog JSON", jsonOut.String())
	assertNoLeak(t, "slog text", textOut.String())
}

type xmlDoc struct{ Key Value }

func mustMarshal(t *testing.T, marshal func(any) ([]byte, error), v any) string {
	t.Helper()
	b, err := marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

func TestValueReveal(t *testing.T) {
	in := []byte(testSecret)
	v := NewValue(in)
	in[0] = 'X' // NewValue copied
	got := v.Reveal()
	if string(got) != testSecret {
		t.Fatalf("Reveal() = %q, want %q", got, testSecret)
	}
	got[0] = 'Y' // Reveal returns a copy
	if string(v.Reveal()) != testSecret {
		t.Error("modifying Reveal's result changed the Value")
	}
	if v.IsZero() {
		t.Error("IsZero() = true for a non-empty Value")
	}
	c := v
	if !reflect.DeepEqual(v, c) || reflect.DeepEqual(v, NewValue([]byte(testSecret))) {
		t.Error("copies of a Value should be DeepEqual, and separately created Values not")
	}
	for _, z := range []Value{{}, NewValue(nil), NewValue([]byte{})} {
		if !z.IsZero() || z.Reveal() != nil {
			t.Errorf("zero Value: IsZero() = %v, Reveal() = %v", z.IsZero(), z.Reveal())
		}
	}
}

func TestValueEqual(t *testing.T) {
	a := NewValue([]byte("abc"))
	tests := []struct {
		name string
		b    Value
		want bool
	}{
		{"same bytes", NewValue([]byte("abc")), true},
		{"different bytes", NewValue([]byte("abd")), false},
		{"prefix", NewValue([]byte("ab")), false},
		{"zero", Value{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.Equal(tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
			if got := tt.b.Equal(a); got != tt.want {
				t.Errorf("reverse Equal = %v, want %v", got, tt.want)
			}
		})
	}
	if !(Value{}).Equal(Value{}) {
		t.Error("two zero Values are not Equal")
	}
}

func BenchmarkValueEqual(b *testing.B) {
	x := NewValue(bytes.Repeat([]byte("k"), 32))
	y := NewValue(bytes.Repeat([]byte("k"), 32))
	b.ReportAllocs()
	for b.Loop() {
		if !x.Equal(y) {
			b.Fatal("not equal")
		}
	}
}
