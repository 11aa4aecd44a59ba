package assertion

import (
	"testing"
)

func FuzzParseKeyPEM(f *testing.F) {
	k1, _, _ := keys(f)
	good, _ := MarshalKeyPEM(k1)
	f.Add(good)
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeyPEM("k", data)
		if err != nil {
			return
		}
		// Anything accepted must be a usable signing key.
		s, err := New(Options{Issuer: testIssuer, Keys: []Key{k}})
		if err != nil {
			t.Fatalf("parsed key refused by New: %v", err)
		}
		if _, _, err := s.Mint(alice, "https://app.example.com"); err != nil {
			t.Fatalf("Mint: %v", err)
		}
	})
}
