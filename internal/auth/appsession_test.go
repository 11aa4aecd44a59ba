package auth

import (
	"testing"
	"time"
)

// TestAppBindingRoundTrip: a binding sealed into the session reads back
// as written, and anything else is no binding.
func TestAppBindingRoundTrip(t *testing.T) {
	for _, b := range []appBinding{
		{key: "6f1c3a3e-8a1b-4b7e-9a53-2f1d8f6f2c99", expires: time.Unix(1_900_000_000, 0), created: time.Unix(1_800_000_000, 0)},
		{key: "k", expires: time.Unix(0, 0), created: time.Unix(-1, 0), retry: true},
	} {
		got, ok := parseAppBinding(b.String())
		if !ok || got.key != b.key || !got.expires.Equal(b.expires) || !got.created.Equal(b.created) || got.retry != b.retry {
			t.Errorf("parseAppBinding(%q) = %+v, %v; want %+v", b.String(), got, ok, b)
		}
	}
	for _, v := range []string{"", "k", "k 1", "k 1 2", " 1 2 0", "k x 2 0", "k 1 x 0", "k 1 2 0 extra"} {
		if b, ok := parseAppBinding(v); ok {
			t.Errorf("parseAppBinding(%q) = %+v; want no binding", v, b)
		}
	}
	if n := testing.AllocsPerRun(100, func() { parseAppBinding("k 1900000000 1800000000 0") }); n != 0 {
		t.Errorf("parseAppBinding allocates %v times", n)
	}
}
