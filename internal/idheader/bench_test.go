package idheader

import (
	"net/netip"
	"testing"
)

func BenchmarkStripTypicalRequest(b *testing.B) {
	s := newStripper(b, "X-Custom-Email")
	h := browserHeaders()
	b.ReportAllocs()
	for b.Loop() {
		s.Strip(h)
	}
}

func BenchmarkStripForgedRequest(b *testing.B) {
	s := newStripper(b, "X-Custom-Email")
	h := browserHeaders()
	v := []string{"admin"}
	b.ReportAllocs()
	for b.Loop() {
		h["X-Forwarded-User"] = v
		h["X_gatehouse_user"] = v
		h["X-Original-Url"] = v
		if s.Strip(h) != 3 {
			b.Fatal("forged headers not stripped")
		}
	}
}

func BenchmarkForwardedFor(b *testing.B) {
	prior := []string{"203.0.113.7, 198.51.100.9"}
	c := netip.MustParseAddr("10.0.0.5")
	b.ReportAllocs()
	for b.Loop() {
		_ = ForwardedFor(prior, c, true)
	}
}

func BenchmarkClientIP(b *testing.B) {
	xff := []string{"203.0.113.7, 198.51.100.9", "10.0.0.7"}
	b.ReportAllocs()
	for b.Loop() {
		_ = ClientIP(haproxy, xff, trustHAProxy)
	}
}
