package token

import (
	"context"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerifyCold is a verification that misses the token cache: header
// and claims decoding, key lookup (JWKS already cached) and the signature.
func BenchmarkVerifyCold(b *testing.B) {
	k := keysOnce()
	for _, tc := range []struct {
		name string
		key  jose.JSONWebKey
	}{{"RS256", k.rsa1}, {"ES256", k.ec1}} {
		b.Run(tc.name, func(b *testing.B) {
			c := newClock()
			v := newVerifier(b, newIDP(b, k.rsa1, k.ec1), c, func(o *Options) { o.CacheSize = -1 })
			tok := signAT(b, tc.key, baseClaims(c))
			ctx := context.Background()
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyCached is a repeated token: precheck, SHA-256, map lookup,
// Claims copy.
func BenchmarkVerifyCached(b *testing.B) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(b, newIDP(b, k.rsa1), c)
	tok := signAT(b, k.rsa1, baseClaims(c))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCachedParallel shows contention on the cache lock.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(b, newIDP(b, k.rsa1), c)
	tok := signAT(b, k.rsa1, baseClaims(c))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRefused is the cost of refusing a forged token (bad signature),
// which is never cached.
func BenchmarkRefused(b *testing.B) {
	k := keysOnce()
	c := newClock()
	v := newVerifier(b, newIDP(b, k.rsa1), c)
	tok := signAT(b, k.attacker, baseClaims(c))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err == nil {
			b.Fatal("forged token verified")
		}
	}
}

func BenchmarkPrecheck(b *testing.B) {
	k := keysOnce()
	c := newClock()
	tok := signAT(b, k.rsa1, baseClaims(c))
	b.ReportAllocs()
	for b.Loop() {
		if err := precheck(tok, DefaultMaxTokenBytes); err != nil {
			b.Fatal(err)
		}
	}
}
