package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"strings"
	"testing"
)

// sealWithNonce builds a sealed value the way the format documents it, with
// a chosen nonce: an independent check of the format, and deterministic
// seeds for FuzzOpen.
func sealWithNonce(t testing.TB, k Key, purpose string, nonce, plaintext []byte) string {
	t.Helper()
	block, err := aes.NewCipher(k.Secret)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	hdr := append([]byte{1, byte(len(k.ID))}, k.ID...)
	raw := append(bytes.Clone(hdr), nonce...)
	raw = gcm.Seal(raw, nonce, plaintext, append(bytes.Clone(hdr), purpose...))
	return b64.EncodeToString(raw)
}

func TestFormatMatchesIndependentSealer(t *testing.T) {
	c := mustCodec(t, "k1")
	v := sealWithNonce(t, testKey("k1"), sessionPurpose, make([]byte, 12), []byte("hello"))
	if got, err := c.Open(sessionPurpose, v); err != nil || string(got) != "hello" {
		t.Errorf("Open of an independently sealed value = %q, %v", got, err)
	}
}

// FuzzOpen feeds Open arbitrary values. Only the seeds are genuine; a
// mutation that opens would be a forgery. Every failure must be one of the
// three documented errors, and no error may echo the input.
func FuzzOpen(f *testing.F) {
	c := mustCodec(f, "k1", "k2")
	genuine := map[string]string{} // sealed value -> plaintext
	for i, pt := range []string{"", "x", "session bytes", strings.Repeat("z", 100)} {
		for j, k := range []Key{testKey("k1"), testKey("k2")} {
			nonce := bytes.Repeat([]byte{byte(i), byte(j)}, 6)
			v := sealWithNonce(f, k, sessionPurpose, nonce, []byte(pt))
			genuine[v] = pt
			f.Add(sessionPurpose, v)
			f.Add(flowPurpose, v)
		}
	}
	for _, s := range []string{"", "A", "AAAA", strings.Repeat("A", 42), "AQJrMQ", "AQJrMQ" + strings.Repeat("A", 60), "AQlrMQ" + strings.Repeat("_", 60)} {
		f.Add(sessionPurpose, s)
	}
	known := []error{ErrMalformed, ErrUnknownKey, ErrTampered}
	f.Fuzz(func(t *testing.T, purpose, sealed string) {
		if purpose == "" {
			return
		}
		pt, err := c.Open(purpose, sealed)
		if err == nil {
			want, ok := genuine[sealed]
			if !ok || purpose != sessionPurpose {
				t.Fatalf("Open(%q, %q) = %q: forged", purpose, sealed, pt)
			}
			if string(pt) != want {
				t.Fatalf("Open of a seed = %q, want %q", pt, want)
			}
			return
		}
		if pt != nil {
			t.Fatalf("Open returned %q with error %v", pt, err)
		}
		ok := false
		for _, e := range known {
			ok = ok || errors.Is(err, e)
		}
		if !ok {
			t.Fatalf("Open(%q) returned an undocumented error %v", sealed, err)
		}
		if len(sealed) >= 4 && strings.Contains(err.Error(), sealed) {
			t.Fatalf("error %q echoes the input", err)
		}
	})
}

// FuzzUnmarshalBinary checks that decoding never panics, fails only with
// ErrEncoding, and accepts only canonical encodings: whatever decodes
// re-encodes to exactly the same bytes.
func FuzzUnmarshalBinary(f *testing.F) {
	fixed := func(s *Session) *Session {
		s.ID = ID{1, 2, 3}
		return s
	}
	for _, s := range []*Session{{}, fixed(typicalSession(t0)), fixed(fullSession())} {
		b, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Session
		err := s.UnmarshalBinary(data)
		if err != nil {
			if !errors.Is(err, ErrEncoding) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("a decoded session does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("non-canonical encoding accepted:\n in: %x\nout: %x", data, again)
		}
	})
}
