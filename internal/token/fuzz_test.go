package token

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var compactRE = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)

// FuzzPrecheck checks that compactShape is exactly the documented regular
// expression and that precheck never admits what the expression refuses.
func FuzzPrecheck(f *testing.F) {
	for _, s := range []string{
		"", ".", "..", "a.b.c", "a.b.", ".b.c", "a..c", "a.b.c.d", "aa.bb.cc", "a-_.b.c",
		"a b.c.d", "a.b.c\n", "a=.b.c", "{\"payload\":\"x\"}", "eyJh.eyJi.c2ln", "ab.cd.ef", "abc.abd.abe",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		shape := compactShape(s)
		if re := compactRE.MatchString(s); shape != re {
			t.Fatalf("compactShape(%q) = %v, regexp = %v", s, shape, re)
		}
		err := precheck(s, DefaultMaxTokenBytes)
		if err == nil && (!shape || len(s) > DefaultMaxTokenBytes) {
			t.Fatalf("precheck admitted %q", s)
		}
		if err == nil {
			// Admitted segments decode strictly, and re-encode to themselves.
			for _, seg := range strings.Split(s, ".") {
				b, derr := b64.DecodeString(seg)
				if derr != nil {
					t.Fatalf("admitted segment %q does not decode: %v", seg, derr)
				}
				if b64.EncodeToString(b) != seg {
					t.Fatalf("admitted segment %q is not canonical", seg)
				}
			}
		}
	})
}

// FuzzVerify feeds arbitrary strings, and mutations of a valid token, to a
// Verifier with real keys. It must never panic, every error must carry a
// reason, and no error may repeat the input.
func FuzzVerify(f *testing.F) {
	k := keysOnce()
	c := newClock()
	p := newIDP(f, k.rsa1, k.ec1)
	v := newVerifier(f, p, c, func(o *Options) { o.CacheSize = -1 })
	claims := baseClaims(c)
	f.Add(signAT(f, k.rsa1, claims))
	f.Add(signAT(f, k.ec1, claims))
	f.Add(sign(f, k.rsa1, with(claims, "nonce", "n"), signOpts{}))
	f.Add(sign(f, k.ec1, claims, signOpts{typ: "logout+jwt"}))
	f.Add(signRawRS256(f, k.rsa1, `{"alg":"RS256","kid":"rsa-1","kid":"x"}`, mustJSON(f, claims)))
	f.Add(enc(`{"alg":"none"}`) + "." + enc(mustJSON(f, claims)) + ".AAAA")
	f.Add(enc(`{"alg":"ES256","kid":"ec-1","x5c":["AAAA"]}`) + "." + enc(`{}`) + ".AAAA")
	f.Add(enc(`{"alg":"RS256","kid":"rsa-1"}`) + "." + enc(`{"aud":[1,{"a":[]}],"groups":"g","exp":1e308}`) + ".AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		claims, err := v.Verify(ctx, s)
		if err == nil {
			if claims.Issuer != testIss || claims.Subject == "" || !slices.Contains(claims.Audience, testAud) {
				t.Fatalf("verified claims %+v break the rules", claims)
			}
			return
		}
		if Reason(err) == ReasonInvalid {
			t.Fatalf("error %q wraps no sentinel", err)
		}
		// Only token-shaped inputs: a fuzzer could otherwise hand in the
		// error text itself.
		if msg := err.Error(); compactShape(s) && len(s) >= 16 && strings.Contains(msg, s) {
			t.Fatalf("error %q repeats the input", msg)
		}
	})
}

// FuzzParseJWKS: parseJWKS never panics and never yields a symmetric key.
func FuzzParseJWKS(f *testing.F) {
	k := keysOnce()
	f.Add([]byte(`{"keys":[` + mustJSON(f, public(k.rsa1)) + `,` + mustJSON(f, public(k.ec1)) + `]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseJWKS(b)
		if err != nil {
			return
		}
		for _, key := range m.all {
			if _, ok := key.pub.([]byte); ok {
				t.Fatal("symmetric key in the key set")
			}
		}
	})
}
