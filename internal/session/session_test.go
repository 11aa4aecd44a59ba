package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func fullSession() *Session {
	s := typicalSession(t0)
	s.IDTokenHint = fakeJWT(900)
	s.Extra = map[string]string{"tenant": "acme", "acr": "urn:mfa", "b": ""}
	s.Groups = append(s.Groups, "", "ünïcödé", strings.Repeat("g", 300))
	return s
}

func TestMarshalRoundTrip(t *testing.T) {
	tests := map[string]*Session{
		"zero":    {},
		"typical": typicalSession(t0),
		"full":    fullSession(),
		"times only": {
			CreatedAt:      time.Unix(1, 0).UTC(),
			LastSeen:       time.Unix(maxUnix, 0).UTC(),
			AbsoluteExpiry: t0,
		},
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := s.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var got Session
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s, &got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			again, err := got.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, again) {
				t.Error("re-encoding the decoded session gives different bytes")
			}
		})
	}
}

func TestMarshalTruncatesTimesToSeconds(t *testing.T) {
	s := &Session{CreatedAt: t0.Add(999 * time.Millisecond).In(time.FixedZone("X", 3600))}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Session
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(t0) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want %v in UTC", got.CreatedAt, t0)
	}
}

func TestMarshalExtraIsOrdered(t *testing.T) {
	// Map iteration order varies; the encoding must not.
	s := &Session{Extra: map[string]string{}}
	for i := range 40 {
		s.Extra[fmt.Sprintf("k%02d", i)] = "v"
	}
	first, _ := s.MarshalBinary()
	for range 20 {
		b, _ := s.MarshalBinary()
		if !bytes.Equal(b, first) {
			t.Fatal("two encodings of one session differ")
		}
	}
}

func TestMarshalRejectsOutOfBounds(t *testing.T) {
	tests := map[string]*Session{
		"time before 1970":  {CreatedAt: time.Unix(-1, 0)},
		"time at the epoch": {LastSeen: time.Unix(0, 0)},
		"time after 9999":   {AbsoluteExpiry: time.Unix(maxUnix+1, 0)},
		"long string":       {RefreshToken: strings.Repeat("r", maxString+1)},
		"long group":        {Groups: []string{strings.Repeat("g", maxString+1)}},
		"too many groups":   {Groups: make([]string, maxGroups+1)},
		"too many extra": {Extra: func() map[string]string {
			m := map[string]string{}
			for i := range maxExtra + 1 {
				m[fmt.Sprint(i)] = ""
			}
			return m
		}()},
		"empty extra key":  {Extra: map[string]string{"": "v"}},
		"long extra value": {Extra: map[string]string{"k": strings.Repeat("v", maxString+1)}},
		"too long in all": {Groups: func() []string {
			g := make([]string, 5)
			for i := range g {
				g[i] = strings.Repeat("g", maxString)
			}
			return g
		}()},
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := s.MarshalBinary(); !errors.Is(err, ErrEncoding) {
				t.Errorf("MarshalBinary = %v, want ErrEncoding", err)
			}
		})
	}
}

func TestUnmarshalRejectsNonCanonical(t *testing.T) {
	valid, err := fullSession().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// zero is the encoding of the zero Session; its offsets are fixed.
	zero, _ := (&Session{}).MarshalBinary()
	const strs = 1 + 32 // offset of Issuer's length
	replace := func(b []byte, at int, with ...byte) []byte {
		out := append([]byte(nil), b[:at]...)
		out = append(out, with...)
		return append(out, b[at+1:]...)
	}
	tests := map[string][]byte{
		"empty":                  {},
		"version 0":              append([]byte{0}, valid[1:]...),
		"version 2":              append([]byte{2}, valid[1:]...),
		"trailing byte":          append(bytes.Clone(valid), 0),
		"overlong varint":        replace(zero, strs, 0x80, 0x00),
		"string past the end":    replace(zero, strs, 0x7f),
		"string over maxString":  replace(zero, strs, binary.AppendUvarint(nil, maxString+1)...),
		"group count past end":   replace(zero, strs+6, 0x10),
		"group count over max":   replace(zero, strs+6, binary.AppendUvarint(nil, maxGroups+1)...),
		"time after 9999":        replace(zero, strs+7, binary.AppendUvarint(nil, maxUnix+1)...),
		"varint over 64 bits":    replace(zero, strs+7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02),
		"varint of 11 bytes":     replace(zero, strs+7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"extra keys unsorted":    append(bytes.Clone(zero[:len(zero)-1]), 2, 1, 'b', 0, 1, 'a', 0),
		"extra key repeated":     append(bytes.Clone(zero[:len(zero)-1]), 2, 1, 'a', 0, 1, 'a', 0),
		"extra key empty":        append(bytes.Clone(zero[:len(zero)-1]), 1, 0, 0),
		"extra count over max":   append(bytes.Clone(zero[:len(zero)-1]), maxExtra+1),
		"over 64 KiB":            append(bytes.Clone(valid), make([]byte, maxEncoded)...),
		"ID cut short":           zero[:20],
		"last byte missing":      valid[:len(valid)-1],
		"group count then empty": append(bytes.Clone(zero[:strs+6]), 1),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			s := &Session{Issuer: "unchanged"}
			if err := s.UnmarshalBinary(b); !errors.Is(err, ErrEncoding) {
				t.Errorf("UnmarshalBinary = %v, want ErrEncoding", err)
			}
			if s.Issuer != "unchanged" {
				t.Error("UnmarshalBinary modified the session on error")
			}
		})
	}
	// Every proper prefix of a valid encoding is invalid.
	for n := range len(valid) {
		var s Session
		if err := s.UnmarshalBinary(valid[:n]); err == nil {
			t.Fatalf("prefix of %d of %d bytes decoded", n, len(valid))
		}
	}
}

func TestSessionIDsAreFreshAndUnique(t *testing.T) {
	const n = 10000
	seen := make(map[ID]bool, n)
	var ones int
	for range n {
		id := NewID()
		if id.IsZero() {
			t.Fatal("NewID returned the zero ID")
		}
		if seen[id] {
			t.Fatal("NewID repeated an ID")
		}
		seen[id] = true
		for _, b := range id {
			for ; b != 0; b &= b - 1 {
				ones++
			}
		}
	}
	// A crude bias check: about half the bits are set (n*256 bits, 5 sigma).
	if total, half := n*256, n*128; ones < half-5*400 || ones > half+5*400 {
		t.Errorf("%d of %d bits set; the generator looks biased", ones, total)
	}
}

// TestSessionIDNeverPrinted makes sure the raw ID, which is the credential
// for a server-side store, reaches neither fmt nor slog.
func TestSessionIDNeverPrinted(t *testing.T) {
	var id ID
	for i := range id {
		id[i] = 0xab
	}
	s := Session{ID: id, Issuer: "iss", Subject: "sub", RefreshToken: "rt-secret-value", IDTokenHint: "idt-secret-value"}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		fmt.Fprintf(&out, verb+"\n", id)
		fmt.Fprintf(&out, verb+"\n", s)
		fmt.Fprintf(&out, verb+"\n", &s)
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "id", id, "session", s, "ptr", &s)
	slog.New(slog.NewTextHandler(&out, nil)).Info("x", "id", id, "session", s, "ptr", &s)
	text := out.String()
	for _, secret := range []string{"abab", "ABAB", "171, 171", "171 171", "rt-secret", "idt-secret"} {
		if strings.Contains(text, secret) {
			t.Errorf("output contains %q:\n%s", secret, text)
		}
	}
	if !strings.Contains(text, id.Ref()) || !strings.Contains(text, `"sub"`) {
		t.Errorf("output lacks the ID reference or the subject:\n%s", text)
	}
}
