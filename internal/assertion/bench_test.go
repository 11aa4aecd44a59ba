package assertion

import (
	"fmt"
	"testing"
)

func BenchmarkMint(b *testing.B) {
	s := newSigner(b, Options{})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Mint(alice, app); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetCached(b *testing.B) {
	s := newSigner(b, Options{})
	if _, _, err := s.Get("sess-1", alice, app); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Get("sess-1", alice, app); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetCachedParallel(b *testing.B) {
	s := newSigner(b, Options{})
	sessions := make([]string, 1024)
	for i := range sessions {
		sessions[i] = fmt.Sprintf("sess-%d", i)
		if _, _, err := s.Get(sessions[i], alice, app); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, _, err := s.Get(sessions[i%len(sessions)], alice, app); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func TestGetCachedDoesNotAllocate(t *testing.T) {
	s := newSigner(t, Options{})
	if _, _, err := s.Get("sess-1", alice, app); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { s.Get("sess-1", alice, app) }); n != 0 {
		t.Errorf("cached Get allocates %v times", n)
	}
}
