package session

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewCodecValidation(t *testing.T) {
	good := testKey("k1")
	tests := []struct {
		name string
		keys []Key
		want []string // substrings of the error, all present
	}{
		{"no keys", nil, []string{"at least one key"}},
		{"empty ID", []Key{{ID: "", Secret: good.Secret}}, []string{"key 0: ID must be"}},
		{"long ID", []Key{{ID: "abcdefghi", Secret: good.Secret}}, []string{"key 0: ID must be"}},
		{"ID with dash", []Key{{ID: "k-1", Secret: good.Secret}}, []string{"key 0: ID must be"}},
		{"short secret", []Key{{ID: "k1", Secret: good.Secret[:16]}}, []string{`key 0 ("k1"): secret is 16 bytes, want 32`}},
		{"zero secret", []Key{{ID: "k1", Secret: make([]byte, 32)}}, []string{"all zeros"}},
		{"duplicate ID", []Key{good, {ID: "k1", Secret: testKey("k2").Secret}}, []string{`key 1: duplicate ID "k1"`}},
		{"shared secret", []Key{good, {ID: "k2", Secret: good.Secret}}, []string{`key 1 ("k2"): same secret as key "k1"`}},
		{
			"every problem reported",
			[]Key{{ID: "", Secret: nil}, good, {ID: "k1", Secret: make([]byte, 32)}},
			[]string{"key 0: ID must be", "key 0 (\"\"): secret is 0 bytes", `key 2: duplicate ID "k1"`, "key 2 (\"k1\"): secret is all zeros"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCodec(tt.keys)
			if err == nil {
				t.Fatalf("NewCodec succeeded with %d keys", len(c.keys))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), string(good.Secret)) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestNewCodecDoesNotRetainSecret(t *testing.T) {
	k := testKey("k1")
	c, err := NewCodec([]Key{k})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Seal(sessionPurpose, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	clear(k.Secret)
	if _, err := c.Open(sessionPurpose, sealed); err != nil {
		t.Fatalf("Open after the caller cleared its secret: %v", err)
	}
	if got := c.KeyIDs(); !cmp.Equal(got, []string{"k1"}) {
		t.Errorf("KeyIDs() = %q", got)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	c := mustCodec(t, "k1")
	for _, n := range []int{0, 1, 15, 16, 17, 100, 1000} {
		pt := bytes.Repeat([]byte{0xa5}, n)
		sealed, err := c.Seal(sessionPurpose, pt)
		if err != nil {
			t.Fatalf("Seal(%d bytes): %v", n, err)
		}
		if want := c.sealedLen(n); len(sealed) != want {
			t.Errorf("Seal(%d bytes) is %d long; sealedLen says %d", n, len(sealed), want)
		}
		got, err := c.Open(sessionPurpose, sealed)
		if err != nil {
			t.Fatalf("Open(Seal(%d bytes)): %v", n, err)
		}
		if !bytes.Equal(got, pt) {
			t.Errorf("Open(Seal(%d bytes)) = %x", n, got)
		}
	}
}

func TestSealedFormat(t *testing.T) {
	c := mustCodec(t, "key42")
	sealed, err := c.Seal(sessionPurpose, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(sealed, "=+/") {
		t.Errorf("sealed value %q is not unpadded base64url", sealed)
	}
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if raw[0] != formatVersion || raw[1] != 5 || string(raw[2:7]) != "key42" {
		t.Errorf("header = %x, want version 1, length 5, key42", raw[:7])
	}
	if want := 7 + 12 + len("hello") + 16; len(raw) != want {
		t.Errorf("decoded length %d, want %d", len(raw), want)
	}
	if bytes.Contains(raw, []byte("hello")) {
		t.Error("plaintext visible in the sealed value")
	}
}

func TestSealIsRandomized(t *testing.T) {
	c := mustCodec(t, "k1")
	a, _ := c.Seal(sessionPurpose, []byte("same"))
	b, _ := c.Seal(sessionPurpose, []byte("same"))
	if a == b {
		t.Error("sealing the same plaintext twice gave the same value: nonce reuse")
	}
}

func TestSealRejectsEmptyPurpose(t *testing.T) {
	c := mustCodec(t, "k1")
	if _, err := c.Seal("", []byte("x")); err == nil {
		t.Error("Seal with an empty purpose succeeded")
	}
	sealed, _ := c.Seal(sessionPurpose, []byte("x"))
	if _, err := c.Open("", sealed); err == nil {
		t.Error("Open with an empty purpose succeeded")
	}
}

// TestTamperedCookieRejected flips each bit of each byte of the decoded
// value (header, nonce, ciphertext, tag) and, separately, changes every
// character of the encoded value. Nothing may open.
func TestTamperedCookieRejected(t *testing.T) {
	c := mustCodec(t, "k1", "k2")
	sealed, err := c.Seal(sessionPurpose, []byte(`{"sub":"alice","groups":["staff"]}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := b64.DecodeString(sealed)
	for i := range raw {
		for bit := range 8 {
			mod := bytes.Clone(raw)
			mod[i] ^= 1 << bit
			pt, err := c.Open(sessionPurpose, b64.EncodeToString(mod))
			if err == nil {
				t.Fatalf("byte %d bit %d flipped: opened as %q", i, bit, pt)
			}
			if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("byte %d bit %d flipped: unexpected error %v", i, bit, err)
			}
			// Past the header, only authentication can catch it.
			if i >= 4 && !errors.Is(err, ErrTampered) {
				t.Errorf("byte %d bit %d flipped: %v, want ErrTampered", i, bit, err)
			}
		}
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. \r\n\x00\xff"
	for i := range len(sealed) {
		for _, r := range []byte(alphabet) {
			if sealed[i] == r {
				continue
			}
			mod := sealed[:i] + string(r) + sealed[i+1:]
			if pt, err := c.Open(sessionPurpose, mod); err == nil {
				t.Fatalf("character %d changed to %q: opened as %q", i, r, pt)
			}
		}
	}
}

func TestTruncatedCookieRejected(t *testing.T) {
	c := mustCodec(t, "k1")
	sealed, _ := c.Seal(sessionPurpose, []byte("some session bytes"))
	for n := range len(sealed) {
		if _, err := c.Open(sessionPurpose, sealed[:n]); err == nil {
			t.Fatalf("prefix of %d of %d characters opened", n, len(sealed))
		}
		if _, err := c.Open(sessionPurpose, sealed[n+1:]); err == nil {
			t.Fatalf("suffix from %d of %d characters opened", n+1, len(sealed))
		}
	}
	for _, extra := range []string{"A", "AA", "AAAA", "=", "==", "\n", " "} {
		if _, err := c.Open(sessionPurpose, sealed+extra); err == nil {
			t.Errorf("value with %q appended opened", extra)
		}
	}
}

func TestOpenRejectsNonCanonicalEncodings(t *testing.T) {
	c := mustCodec(t, "k1")
	// 20 bytes of plaintext make a 51-byte value, whose length is 3 mod 4:
	// the last character carries two padding bits.
	sealed, _ := c.Seal(sessionPurpose, bytes.Repeat([]byte("p"), 20))
	if len(sealed)%4 == 0 {
		t.Fatalf("sealed length %d has no padding bits; adjust the plaintext", len(sealed))
	}
	raw, _ := b64.DecodeString(sealed)
	tests := map[string]string{
		"padded":            base64.URLEncoding.EncodeToString(raw),
		"standard alphabet": strings.NewReplacer("-", "+", "_", "/").Replace(sealed) + "+/",
		"CR LF inside":      sealed[:10] + "\r\n" + sealed[10:],
		"space inside":      sealed[:10] + " " + sealed[10:],
		"leading space":     " " + sealed,
		"non-zero padding bits": func() string {
			last := strings.IndexByte(base64URLAlphabet, sealed[len(sealed)-1])
			return sealed[:len(sealed)-1] + string(base64URLAlphabet[last^1])
		}(),
	}
	for name, v := range tests {
		t.Run(name, func(t *testing.T) {
			if v == sealed {
				t.Fatal("test case equals the original")
			}
			if _, err := c.Open(sessionPurpose, v); !errors.Is(err, ErrMalformed) {
				t.Errorf("Open = %v, want ErrMalformed", err)
			}
		})
	}
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestOpenRejectsBadHeaders(t *testing.T) {
	c := mustCodec(t, "k1")
	body := bytes.Repeat([]byte{7}, gcmOverhead+4)
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"version 0", append([]byte{0, 2, 'k', '1'}, body...), ErrMalformed},
		{"version 2", append([]byte{2, 2, 'k', '1'}, body...), ErrMalformed},
		{"key ID length 0", append([]byte{1, 0}, body...), ErrMalformed},
		{"key ID length 9", append([]byte{1, 9, 'k', '1'}, body...), ErrMalformed},
		{"key ID length past the end", []byte{1, 200, 'k', '1', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrMalformed},
		{"no tag", append([]byte{1, 2, 'k', '1'}, body[:gcmOverhead-1]...), ErrMalformed},
		{"unknown key", append([]byte{1, 2, 'k', '9'}, body...), ErrUnknownKey},
		{"known key, garbage", append([]byte{1, 2, 'k', '1'}, body...), ErrTampered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Open(sessionPurpose, b64.EncodeToString(tt.raw)); !errors.Is(err, tt.want) {
				t.Errorf("Open = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOpenRejectsOversizedBeforeDecoding(t *testing.T) {
	c := mustCodec(t, "k1")
	if _, err := c.Open(sessionPurpose, strings.Repeat("A", MaxCookieValue+1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("Open(%d bytes) = %v, want ErrMalformed", MaxCookieValue+1, err)
	}
	if _, err := c.Open(sessionPurpose, strings.Repeat("A", 10<<20)); !errors.Is(err, ErrMalformed) {
		t.Errorf("Open(10 MiB) = %v, want ErrMalformed", err)
	}
}

func TestSealTooLarge(t *testing.T) {
	c := mustCodec(t, "k1")
	// Find the largest plaintext that fits, then one byte more.
	n := 0
	for c.sealedLen(n+1) <= MaxCookieValue {
		n++
	}
	sealed, err := c.Seal(sessionPurpose, make([]byte, n))
	if err != nil {
		t.Fatalf("Seal(%d bytes): %v", n, err)
	}
	if len(sealed) > MaxCookieValue || len(sealed) < MaxCookieValue-3 {
		t.Errorf("largest sealed value is %d long, want just under %d", len(sealed), MaxCookieValue)
	}
	if _, err := c.Open(sessionPurpose, sealed); err != nil {
		t.Errorf("Open of the largest value: %v", err)
	}
	if _, err := c.Seal(sessionPurpose, make([]byte, n+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Seal(%d bytes) = %v, want ErrTooLarge", n+1, err)
	}
}

func TestCookieSealedWithRemovedKeyRejected(t *testing.T) {
	before := mustCodec(t, "k2", "k1")
	sealed, _ := before.Seal(sessionPurpose, []byte("session"))
	after := mustCodec(t, "k3")
	if _, err := after.Open(sessionPurpose, sealed); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Open after the key was removed = %v, want ErrUnknownKey", err)
	}
}

func TestKeyReusedForNewSecretRejectsOldCookies(t *testing.T) {
	old := mustCodec(t, "k1")
	sealed, _ := old.Seal(sessionPurpose, []byte("session"))
	k := testKey("k2")
	k.ID = "k1"
	reused, err := NewCodec([]Key{k})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reused.Open(sessionPurpose, sealed); !errors.Is(err, ErrTampered) {
		t.Errorf("Open under a new secret with the old ID = %v, want ErrTampered", err)
	}
}

// TestKeyIDSubstitutionRejected rewrites a value's key ID to another key the
// codec holds: the header is authenticated, so this must not open.
func TestKeyIDSubstitutionRejected(t *testing.T) {
	c := mustCodec(t, "k1", "k2")
	sealed, _ := c.Seal(sessionPurpose, []byte("session"))
	raw, _ := b64.DecodeString(sealed)
	if string(raw[2:4]) != "k1" {
		t.Fatalf("sealed with %q, want k1", raw[2:4])
	}
	raw[3] = '2'
	if _, err := c.Open(sessionPurpose, b64.EncodeToString(raw)); !errors.Is(err, ErrTampered) {
		t.Errorf("Open with the key ID rewritten = %v, want ErrTampered", err)
	}
}

func TestRotationOpensOldKeySealsNew(t *testing.T) {
	old := mustCodec(t, "k1")
	oldSealed, _ := old.Seal(sessionPurpose, []byte("old session"))

	rotated := mustCodec(t, "k2", "k1")
	if got, err := rotated.Open(sessionPurpose, oldSealed); err != nil || string(got) != "old session" {
		t.Fatalf("rotated codec opening an old value = %q, %v", got, err)
	}
	newSealed, _ := rotated.Seal(sessionPurpose, []byte("new session"))
	raw, _ := b64.DecodeString(newSealed)
	if id := string(raw[2 : 2+raw[1]]); id != "k2" {
		t.Errorf("rotated codec sealed with %q, want k2", id)
	}
	// An instance not yet rotated cannot open the new value: roll the new
	// key out to every instance (as a second key) before making it first.
	if _, err := old.Open(sessionPurpose, newSealed); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old codec opening a new value = %v, want ErrUnknownKey", err)
	}
	done := mustCodec(t, "k2")
	if _, err := done.Open(sessionPurpose, oldSealed); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("after removing k1, old value = %v, want ErrUnknownKey", err)
	}
	if _, err := done.Open(sessionPurpose, newSealed); err != nil {
		t.Errorf("after removing k1, new value: %v", err)
	}
}

func TestFlowCookieCannotBeOpenedAsSession(t *testing.T) {
	c := mustCodec(t, "k1")
	flow, _ := c.Seal(flowPurpose, []byte("state=abc&nonce=def&verifier=ghi"))
	if _, err := c.Open(sessionPurpose, flow); !errors.Is(err, ErrTampered) {
		t.Errorf("flow cookie opened as a session: %v, want ErrTampered", err)
	}
	session, _ := c.Seal(sessionPurpose, []byte("session"))
	if _, err := c.Open(flowPurpose, session); !errors.Is(err, ErrTampered) {
		t.Errorf("session cookie opened as a flow: %v, want ErrTampered", err)
	}
	if _, err := c.Open(flowPurpose, flow); err != nil {
		t.Errorf("flow cookie for its own purpose: %v", err)
	}
}

func TestOpenErrorsDoNotEchoInput(t *testing.T) {
	c := mustCodec(t, "k1")
	for _, in := range []string{
		"<script>alert(1)</script>",
		strings.Repeat("ZXZpbA", 20),
		b64.EncodeToString(append([]byte{1, 5, 'e', 'v', 'i', 'l', 'x'}, make([]byte, 40)...)),
	} {
		_, err := c.Open(sessionPurpose, in)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), in) || strings.Contains(err.Error(), "evil") || strings.Contains(err.Error(), "ZXZp") {
			t.Errorf("error %q echoes the input", err)
		}
	}
}
