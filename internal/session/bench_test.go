package session

import (
	"fmt"
	"testing"
	"time"
)

var (
	sinkString  string
	sinkBytes   []byte
	sinkSession *Session
	sinkBool    bool
)

// typicalPlaintext is the encoding of typicalSession: five groups and an
// opaque refresh token.
func typicalPlaintext(b *testing.B) []byte {
	p, err := typicalSession(t0).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkSeal(b *testing.B) {
	c := mustCodec(b, "k1")
	p := typicalPlaintext(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		sinkString, _ = c.Seal(sessionPurpose, p)
	}
	b.ReportMetric(float64(len(sinkString)), "cookie-bytes")
}

func BenchmarkOpen(b *testing.B) {
	c := mustCodec(b, "k2", "k1")
	p := typicalPlaintext(b)
	v, _ := c.Seal(sessionPurpose, p)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		sinkBytes, _ = c.Open(sessionPurpose, v)
	}
}

func BenchmarkOpenTampered(b *testing.B) {
	c := mustCodec(b, "k1")
	v, _ := c.Seal(sessionPurpose, typicalPlaintext(b))
	v = v[:len(v)-2] + "AA"
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes, _ = c.Open(sessionPurpose, v)
	}
}

func BenchmarkMarshalBinary(b *testing.B) {
	s := typicalSession(t0)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes, _ = s.MarshalBinary()
	}
}

func BenchmarkUnmarshalBinary(b *testing.B) {
	p := typicalPlaintext(b)
	b.ReportAllocs()
	for b.Loop() {
		var s Session
		_ = s.UnmarshalBinary(p)
	}
}

// BenchmarkLoad is the per-request cost of the cookie store: open, decode,
// check times and the revocation list (holding 10,000 entries).
func BenchmarkLoad(b *testing.B) {
	opts := testOptions(b)
	c := mustStore(b, opts)
	for i := range 10000 {
		s := typicalSession(t0)
		s.Subject = fmt.Sprint(i)
		_ = opts.Revocations.Revoke(s, t0, t0.Add(time.Hour))
	}
	v, err := c.Save(ctx, typicalSession(t0), t0)
	if err != nil {
		b.Fatal(err)
	}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if sinkSession, err = c.Load(ctx, v, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(v)), "cookie-bytes")
}

func BenchmarkSave(b *testing.B) {
	c := mustStore(b, testOptions(b))
	s := typicalSession(t0)
	b.ReportAllocs()
	for b.Loop() {
		sinkString, _ = c.Save(ctx, s, t0)
	}
}

func BenchmarkRevoked(b *testing.B) {
	l := mustRevocations(b, 0)
	for i := range DefaultMaxRevocations / 2 {
		s := typicalSession(t0)
		s.Subject = fmt.Sprint(i)
		_ = l.Revoke(s, t0, t0.Add(time.Hour))
		_ = l.RevokeSID(s.Issuer, s.Subject, t0, t0.Add(time.Hour))
	}
	s := typicalSession(t0)
	b.ReportAllocs()
	for b.Loop() {
		sinkBool = l.Revoked(s)
	}
}
