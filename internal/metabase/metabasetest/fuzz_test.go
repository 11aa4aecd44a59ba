package metabasetest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzVerifyJWT checks that the token parser never panics and never accepts
// a token whose HS256 MAC over the secret's raw bytes is wrong.
func FuzzVerifyJWT(f *testing.F) {
	clock := newClock()
	s := &Server{opts: Options{JWTSharedSecret: testSecret, Now: clock.Now}}
	f.Add(sign(f, []byte(testSecret), hs256, claimsFor(clock, "ana@example.com")))
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, token string) {
		claims, msg := s.verifyJWT(token)
		if msg != "" {
			if claims != nil {
				t.Fatalf("claims with error %q", msg)
			}
			return
		}
		p := strings.Split(token, ".")
		mac := hmac.New(sha256.New, []byte(testSecret))
		mac.Write([]byte(p[0] + "." + p[1]))
		if sig, err := base64.RawURLEncoding.DecodeString(p[2]); err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("accepted %q without a valid MAC", token)
		}
	})
}
